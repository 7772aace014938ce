"""The tally of one load-generator run (bench/loadgen.py): feed and event-post latencies, errors,
the generator's own schedule lag, and the summary it reports (percentiles overall and per window
of scheduled time: the soak's per-minute p99)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Tally:
    feed_lat: list[float] = field(default_factory=list)
    feed_at: list[float] = field(default_factory=list)  # scheduled offset of each feed (s)
    event_lat: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    feed_errors: int = 0
    event_errors: int = 0
    error_at: list[float] = field(default_factory=list)
    events_as_feeds: int = 0  # event slots before any feed had been served


def _pct(ms: Any, qs: tuple[int, ...] = (50, 95, 99)) -> list[float]:
    if not ms.size:
        return [float("nan")] * len(qs)
    return [round(float(v), 3) for v in np.percentile(ms, qs)]


def _summary(lat_s: list[float], errors: int, elapsed_s: float) -> dict[str, Any]:
    ms = np.asarray(lat_s, dtype=np.float64) * 1000.0
    p50, p95, p99 = _pct(ms)
    return {
        "requests": int(ms.size) + errors,
        "ok": int(ms.size),
        "errors": errors,
        "rps": round(ms.size / elapsed_s, 1) if elapsed_s > 0 else 0.0,
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
        "max_ms": round(float(ms.max()), 3) if ms.size else float("nan"),
        "elapsed_s": round(elapsed_s, 3),
    }


def _windows(t: Tally, window_s: float, elapsed_s: float) -> list[dict[str, Any]]:
    """Feed latency per window of scheduled time (the soak's per-minute p99)."""
    if window_s <= 0:
        return []
    at = np.asarray(t.feed_at)
    ms = np.asarray(t.feed_lat) * 1000.0
    errs = np.asarray(t.error_at)
    out = []
    for w in range(int(np.ceil(elapsed_s / window_s - 1e-9))):
        lo, hi = w * window_s, (w + 1) * window_s
        mine = ms[(at >= lo) & (at < hi)]
        p50, p99 = _pct(mine, (50, 99))
        out.append(
            {
                "start_s": lo,
                "requests": int(mine.size),
                "errors": int(((errs >= lo) & (errs < hi)).sum()),
                "p50_ms": p50,
                "p99_ms": p99,
                "max_ms": round(float(mine.max()), 3) if mine.size else float("nan"),
            }
        )
    return out


def result(t: Tally, elapsed_s: float, window_s: float) -> dict[str, Any]:
    out = _summary(t.feed_lat, t.feed_errors, elapsed_s)
    events = _summary(t.event_lat, t.event_errors, elapsed_s)
    out["feed_rps"] = out["rps"]
    out["rps"] = round(out["rps"] + events["rps"], 1)  # every request answered: feeds + posts
    out["events"] = events
    out["event_share"] = round(events["requests"] / max(1, out["requests"] + events["requests"]), 4)
    out["events_sent_as_feeds"] = t.events_as_feeds
    out["total_requests"] = out["requests"] + events["requests"]
    out["errors"] = t.feed_errors + t.event_errors
    if t.lags:
        lag = np.asarray(t.lags) * 1000.0
        p50, p95, p99 = _pct(lag)
        out["lag_ms"] = {"p50": p50, "p95": p95, "p99": p99, "max": round(float(lag.max()), 3)}
        out["lag_p99_ms"] = p99
    windows = _windows(t, window_s, elapsed_s)
    if windows:
        out["windows"] = windows
    return out
