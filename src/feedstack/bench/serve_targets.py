"""The serving targets of one ``bench all`` run, each figure with its same-run baseline and
ratio: a summary record (kind ``serve-targets``) computed from the run's other records.

- p99 at 300 req/s with events (HTTP) <= 15 ms; baseline: the bare endpoint at the same rate;
- saturation >= 1,000 req/s and >= 1.5 x the one-thread in-process feeds/s of the same run
  (more than one core serves); baseline: that in-process rate;
- gRPC within 20 % of HTTP (p99 at 300 req/s and saturation);
- soak: p99 per minute <= 15 ms, RSS growth <= 1 MB/min after the first two minutes.
"""

from __future__ import annotations

from typing import Any

P99_MS = 15.0
SATURATION_RPS = 1_000.0
OVER_INPROC = 1.5
GRPC_WITHIN = 0.2


def _serve(records: list[dict[str, Any]], protocol: str, rate: float | None) -> dict[str, Any]:
    """The newest serve record of this protocol and rate, embedded candidate cache."""
    found: dict[str, Any] = {}
    for rec in records:
        r = rec["result"]
        same = r.get("protocol") == protocol and r.get("rate") == rate
        if rec["kind"] == "serve" and same and r.get("candidate_cache") != "redis":
            found = r
    return found


def _ratio(a: Any, b: Any) -> float | None:
    if isinstance(a, int | float) and isinstance(b, int | float) and b:
        return round(float(a) / float(b), 3)
    return None


def serving_targets(records: list[dict[str, Any]]) -> dict[str, Any]:
    http300, http_sat = _serve(records, "http", 300.0), _serve(records, "http", None)
    grpc300, grpc_sat = _serve(records, "grpc", 300.0), _serve(records, "grpc", None)
    inproc: dict[str, Any] = next(
        (r["result"] for r in records if r["kind"] == "bench-request-path"), {}
    )
    soak: dict[str, Any] = next((r["result"] for r in records if r["kind"] == "bench-soak"), {})
    one_thread = inproc.get("requests_per_s_one_thread")
    out: dict[str, Any] = {
        "workers": http300.get("workers"),
        "event_share": http300.get("event_share"),
        "http_p99_ms_at_300": http300.get("p99_ms"),
        "http_floor_p99_ms_at_300": http300.get("floor_p99_ms_at_rate"),
        "http_p99_over_floor": _ratio(http300.get("p99_ms"), http300.get("floor_p99_ms_at_rate")),
        "http_events_p99_ms_at_300": http300.get("events_p99_ms"),
        "http_saturation_rps": http_sat.get("rps"),
        "inproc_one_thread_feeds_per_s": one_thread,
        "saturation_over_inproc": _ratio(http_sat.get("rps"), one_thread),
        "saturation_over_floor": _ratio(http_sat.get("rps"), http_sat.get("floor_rps")),
        "grpc_p99_ms_at_300": grpc300.get("p99_ms"),
        "grpc_over_http_p99_at_300": _ratio(grpc300.get("p99_ms"), http300.get("p99_ms")),
        "grpc_saturation_rps": grpc_sat.get("rps"),
        "grpc_over_http_saturation": _ratio(grpc_sat.get("rps"), http_sat.get("rps")),
        "soak_minutes": round(soak["duration_s"] / 60.0, 1) if soak else None,
        "soak_p99_ms_worst_minute": soak.get("p99_ms_worst_minute"),
        "soak_rss_growth_mb_per_min": soak.get("rss_growth_mb_per_min_after_settle"),
        "load_average_1m_at_end": inproc.get("load_average_1m"),
    }

    def ok(value: Any, test: Any) -> bool | None:
        return None if value is None else bool(test(value))

    out["meets"] = {
        "p99_at_300": ok(out["http_p99_ms_at_300"], lambda v: v <= P99_MS),
        "saturation_1000": ok(out["http_saturation_rps"], lambda v: v >= SATURATION_RPS),
        "saturation_over_inproc": ok(out["saturation_over_inproc"], lambda v: v >= OVER_INPROC),
        "grpc_p99_within_20pct": ok(
            out["grpc_over_http_p99_at_300"], lambda v: v <= 1.0 + GRPC_WITHIN
        ),
        "grpc_saturation_within_20pct": ok(
            out["grpc_over_http_saturation"], lambda v: v >= 1.0 - GRPC_WITHIN
        ),
        "soak_p99": ok(out["soak_p99_ms_worst_minute"], lambda v: v <= P99_MS),
        "soak_growth": ok(out["soak_rss_growth_mb_per_min"], lambda v: v <= 1.0),
    }
    return out
