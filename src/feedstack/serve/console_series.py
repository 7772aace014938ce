"""The console's live series: the serving process samples its own Prometheus registry once a
second and keeps the last ``keep`` points, so the page's first poll already draws a history.

Each point is derived from the difference between two samples of the cumulative metrics
(monitor/metrics.py), the way Prometheus' ``rate`` and ``histogram_quantile`` derive them:

- requests/s of the feed endpoint; p50 and p99 of its latency (linear interpolation inside the
  histogram bucket, as ``histogram_quantile`` does), drawn against the spec's SLO lines;
- fallbacks/s by reason (and their total);
- CTR (clicks / impressions) per model version and arm, over the last ``ctr_window_s``;
- feature freshness: serving clock minus the newest event behind the served item features;
- drift of the ranker's score distribution and of the served candidate-source mix: PSI and KL
  (monitor/drift.py) of the last ``drift_window_s`` against the first ``min_samples`` values the
  process served (its reference), drawn against the spec's alert thresholds.

With ``--workers N`` every worker's registry sums all workers (multiprocess mode), so each
worker's sampler sees the whole server.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from feedstack.core.spec import Spec
from feedstack.monitor.drift import kl, psi, smoothed_shares
from feedstack.monitor.metrics import ServingMetrics

Counts = dict[str, float]


@dataclass
class Snapshot:
    """Cumulative values of one registry collection."""

    t: float
    requests: float = 0.0
    latency: dict[float, float] = field(default_factory=dict)  # le -> cumulative count
    fallbacks: Counts = field(default_factory=dict)
    impressions: Counts = field(default_factory=dict)  # "version/arm" -> count
    clicks: Counts = field(default_factory=dict)
    scores: dict[float, float] = field(default_factory=dict)  # le -> cumulative count
    sources: Counts = field(default_factory=dict)


def snapshot(metrics: ServingMetrics, t: float) -> Snapshot:
    s = Snapshot(t)
    for family in metrics.registry.collect():
        for x in family.samples:
            lab, name = x.labels, x.name
            if name == "feedstack_requests_total" and lab.get("endpoint") == "feed":
                s.requests += x.value
            elif name == "feedstack_request_duration_seconds_bucket" and (
                lab.get("endpoint") == "feed"
            ):
                le = float(lab["le"])
                s.latency[le] = s.latency.get(le, 0.0) + x.value
            elif name == "feedstack_fallbacks_total":
                _add(s.fallbacks, lab.get("reason", ""), x.value)
            elif name == "feedstack_impressions_total":
                _add(s.impressions, f"{lab.get('model_version')}/{lab.get('arm')}", x.value)
            elif name == "feedstack_clicks_total":
                _add(s.clicks, f"{lab.get('model_version')}/{lab.get('arm')}", x.value)
            elif name == "feedstack_ranker_score_bucket":
                le = float(lab["le"])
                s.scores[le] = s.scores.get(le, 0.0) + x.value
            elif name == "feedstack_served_items_total":
                _add(s.sources, lab.get("source", ""), x.value)
    return s


def _add(d: Counts, key: str, value: float) -> None:
    d[key] = d.get(key, 0.0) + value


def quantile(q: float, cumulative: dict[float, float]) -> float | None:
    """``histogram_quantile(q, ...)`` over cumulative bucket counts (seconds), None if empty."""
    les = sorted(cumulative)
    if not les:
        return None
    total = cumulative[les[-1]]
    if total <= 0:
        return None
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le in les:
        c = cumulative[le]
        if c >= rank:
            if math.isinf(le):
                return prev_le  # Prometheus answers the highest finite bound
            if c == prev_c:
                return le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return les[-1]


def _minus(a: dict[Any, float], b: dict[Any, float]) -> dict[Any, float]:
    """a - b per key, floored at 0 (a worker restart resets its counters)."""
    return {k: max(0.0, v - b.get(k, 0.0)) for k, v in a.items()}


def _buckets(cumulative: dict[float, float]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Per-bucket counts from cumulative ``le`` counts."""
    c = np.array([cumulative[k] for k in sorted(cumulative)], dtype=np.float64)
    return np.diff(c, prepend=0.0)


def divergence(ref: np.ndarray[Any, Any], live: np.ndarray[Any, Any]) -> tuple[float, float]:
    """(PSI, KL) of live counts against reference counts, smoothed as drift.py does."""
    p, q = smoothed_shares(ref), smoothed_shares(live)
    return psi(p, q), kl(p, q)


class ConsoleSeries:
    """Samples ``metrics`` every ``interval_s`` in a daemon thread; ``to_json`` is the data."""

    def __init__(
        self,
        metrics: ServingMetrics,
        spec: Spec,
        freshness: Callable[[], float | None] = lambda: None,
        *,
        interval_s: float = 1.0,
        keep: int = 600,
        ctr_window_s: float = 30.0,
        drift_window_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics, self.spec, self.freshness = metrics, spec, freshness
        self.interval_s, self.clock = interval_s, clock
        self.ctr_window_s, self.drift_window_s = ctr_window_s, drift_window_s
        self.min_samples = spec.monitor.drift_min_samples
        self.snaps: deque[Snapshot] = deque(maxlen=keep + 1)
        self.points: deque[dict[str, Any]] = deque(maxlen=keep)
        self.ref_scores: np.ndarray[Any, Any] | None = None
        self.ref_sources: Counts | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None and self.metrics.enabled:
            self._thread = threading.Thread(target=self._run, name="console", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # a sample never takes the server down
                self.sample()
            self._stop.wait(self.interval_s)

    def _back(self, now: Snapshot, window_s: float) -> Snapshot:
        """The oldest kept snapshot within ``window_s`` of ``now``."""
        for s in self.snaps:
            if now.t - s.t <= window_s + self.interval_s / 2:
                return s
        return self.snaps[-1]

    def sample(self) -> None:
        now = snapshot(self.metrics, self.clock())
        with self._lock:
            if self.snaps:
                self.points.append(self._point(self.snaps[-1], now))
            self.snaps.append(now)

    def _point(self, prev: Snapshot, now: Snapshot) -> dict[str, Any]:
        dt = max(now.t - prev.t, 1e-9)
        lat = _minus(now.latency, prev.latency)
        p50, p99 = quantile(0.5, lat), quantile(0.99, lat)
        fallbacks = {k: v / dt for k, v in _minus(now.fallbacks, prev.fallbacks).items()}
        win = self._back(now, self.ctr_window_s)
        imp, clk = _minus(now.impressions, win.impressions), _minus(now.clicks, win.clicks)
        ctr = {k: (clk.get(k, 0.0) / v if v > 0 else None) for k, v in imp.items()}
        lag = self.freshness()
        return {
            "t": round(now.t, 3),
            "rps": round((now.requests - prev.requests) / dt, 3),
            "p50_ms": None if p50 is None else round(p50 * 1000, 3),
            "p99_ms": None if p99 is None else round(p99 * 1000, 3),
            "fallbacks": {"total": round(sum(fallbacks.values()), 3)}
            | {k: round(v, 3) for k, v in fallbacks.items()},
            "ctr": {k: None if v is None else round(v, 5) for k, v in ctr.items()},
            "freshness_lag_s": None if lag is None else round(lag, 3),
            "drift": self._drift(now),
        }

    def _drift(self, now: Snapshot) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        scores = _buckets(now.scores) if now.scores else None
        if self.ref_scores is None and scores is not None and scores.sum() >= self.min_samples:
            self.ref_scores = scores
            self.ref_sources = dict(now.sources)
        if self.ref_scores is None or scores is None:
            return {"score_psi": None, "score_kl": None, "source_psi": None, "source_kl": None}
        back = self._back(now, self.drift_window_s)
        live = scores - (_buckets(back.scores) if back.scores else 0.0)
        if live.sum() <= 0:
            out["score_psi"] = out["score_kl"] = None
        else:
            out["score_psi"], out["score_kl"] = divergence(self.ref_scores, live)
        ref_src = self.ref_sources or {}
        live_src = _minus(now.sources, back.sources)
        names = sorted(set(ref_src) | set(live_src))
        if names and sum(live_src.values()) > 0:
            r = np.array([ref_src.get(n, 0.0) for n in names])
            v = np.array([live_src.get(n, 0.0) for n in names])
            out["source_psi"], out["source_kl"] = divergence(r, v)
        else:
            out["source_psi"] = out["source_kl"] = None
        return {k: None if v is None else round(v, 6) for k, v in out.items()}

    def to_json(self) -> dict[str, Any]:
        lat, d = self.spec.latency, self.spec.drift
        with self._lock:
            points = list(self.points)
        return {
            "interval_s": self.interval_s,
            "points": points,
            "slo": {"p95_ms": lat.p95_ms, "p99_alert_ms": lat.p99_alert_ms},
            "thresholds": {
                "psi_alert": d.psi_alert,
                "kl_alert": d.kl_alert,
                "feature_max_lag_s": self.spec.freshness.feature_max_lag_s,
                "max_fallback_rate": self.spec.registry.max_fallback_rate,
            },
            "drift_reference_ready": self.ref_scores is not None,
        }
