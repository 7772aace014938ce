"""What ``measurements/`` holds, read once: the latest record of each kind and the plan inputs.

Each measured plan input names its record file, the command that wrote it and when. A record
missing (or without the field) leaves the input to the planner's assumption, and the report
says which command would measure it (``HOW_TO_MEASURE``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from feedstack.core.spec import Spec
from feedstack.plan.inputs import PlanInputs
from feedstack.plan.quantity import Quantity
from feedstack.storage import measurements

KINDS: tuple[measurements.Kind, ...] = (
    "serve",
    "candidates",
    "train",
    "evaluate",
    "bench-gowalla",
    "bench-ingest",
    "bench-worker",
    "bench-world",
    "bench-features",
    "drift",
    "bench-abtest",
    "bench-rollout",
    "live",
    "bench-request-path",
    "bench-scale-batch",
    "rollout-demo",
    "abtest-live",
    "bench-stream",
    "bench-replicas",
)

HOW_TO_MEASURE = {
    "serve": "feedstack bench serve --json",
    "candidates": "feedstack candidates build --json",
    "train": "feedstack train --world WORLD --json",
    "evaluate": "feedstack evaluate --json",
    "bench-gowalla": "feedstack bench gowalla --json",
    "bench-ingest": "feedstack bench ingest --json",
    "bench-worker": "feedstack bench worker --json",
    "bench-world": "feedstack bench world --json",
    "bench-features": "feedstack bench all",
    "bench-freshness": "feedstack bench freshness --json",
    "drift": "feedstack demo (drift stage)",
    "bench-abtest": "feedstack bench abtest --json",
    "bench-rollout": "feedstack bench rollout --json",
    "live": "feedstack demo (live traffic stage)",
    "rollout-demo": "feedstack demo (rollout stage)",
    "bench-stream": "feedstack demo --backends scale (stream stage)",
    "abtest-live": "feedstack demo (abtest stage), or feedstack experiment status --json",
    "bench-request-path": "feedstack bench serve-inproc --json",
    "bench-scale-batch": "feedstack bench scale --json",
    "bench-replicas": "feedstack bench replicas --json",
    # No benchmark records these yet: they stay the spec's assumption until one does.
    "spec": "no benchmark yet; set it in feedstack.yaml",
}

# Which record measures each plan input (for "not measured yet (run: ...)").
INPUT_KIND = {
    "rps_per_core_at_slo": "serve",
    "floor_rps_per_core": "serve",
    "bytes_per_candidate": "candidates",
    "feature_bytes_per_user": "spec",
    "feature_bytes_per_article": "spec",
    "train_s_per_million_events": "train",
    "candidate_build_ms_per_user": "candidates",
    "ingest_events_per_s_per_core": "bench-ingest",
    "worker_events_per_s_per_core": "bench-worker",
    "stored_bytes_per_event": "bench-world",
    "events_per_request": "live",
    "rank_ms_per_request": "train",
    "live_articles": "spec",
    "feature_lag_p99_s": "bench-freshness",
    "item_state_events_per_s_per_core": "bench-replicas",
    "model_state_bytes": "candidates",
}


@dataclass
class Measurements:
    folder: Path
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)
    freshness: list[dict[str, Any]] = field(default_factory=list)
    serve_runs: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def read(cls, folder: Path) -> Measurements:
        out = cls(folder)
        for kind in KINDS:
            found = measurements.records(folder, kind)
            if found:
                out.paths[kind], out.records[kind] = found[-1]
        out.freshness = measurements.latest_by(folder, "bench-freshness", "backend")
        # Every serve run, newest per (protocol, target, rate): the planner takes the highest
        # throughput that met the latency objective.
        runs: dict[tuple[str, str, str], dict[str, Any]] = {}
        for path, rec in measurements.records(folder, "serve"):
            r = rec.get("result", {})
            key = (str(r.get("protocol")), str(r.get("target")), str(r.get("rate")))
            runs[key] = {**rec, "_path": path.name}
        out.serve_runs = list(runs.values())
        return out

    def get(self, kind: str) -> dict[str, Any] | None:
        return self.records.get(kind)

    def cite(self, kind: str, what: str, value: float, unit: str) -> Quantity:
        rec = self.records[kind]
        return Quantity.measured(
            value, unit, f"{self.paths[kind].name} ({what})", rec["command"], rec["measured_at"]
        )


def resolve(spec: Spec, folder: Path) -> tuple[Measurements, PlanInputs]:
    """The measurements in ``folder`` and the plan inputs they give (the rest assumed)."""
    m = Measurements.read(folder)
    return m, PlanInputs.resolve(spec, plan_inputs(m, spec))


def plan_from_measurements(spec: Spec, folder: Path) -> dict[str, Any]:
    """``feedstack plan``'s result: the plan from the spec and the records in ``folder``."""
    from feedstack.plan.planner import plan

    _, inputs = resolve(spec, folder)
    return plan(spec, inputs)


def _num(d: Any, *path: str) -> float | None:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    if isinstance(d, bool) or not isinstance(d, int | float):
        return None
    return float(d)


def serve_cores(result: dict[str, Any]) -> tuple[float, str]:
    """Cores the server used in a run: CPU time (summed over the supervisor and every worker)
    over wall time when the record has them, else the server's process count (one Python
    process is held to one core by the GIL)."""
    cpu, wall = _num(result, "server_cpu_s"), _num(result, "elapsed_s")
    if cpu and wall:
        return cpu / wall, "server_cpu_s / elapsed_s, every server process"
    cores = _num(result, "server_cores") or _num(result, "workers") or 1.0
    return cores, f"{cores:g} server process(es), one core each"


def _feed_rps(result: dict[str, Any]) -> float:
    """Feed requests/s of a serve run: with events in the mix, the posts are not feeds (their
    CPU is in the server's cores, as it is in production's)."""
    return _num(result, "feed_rps") or float(result["rps"])


def plan_inputs(m: Measurements, spec: Spec) -> dict[str, Quantity]:
    """Every plan input the measurements provide, with its source."""
    out: dict[str, Quantity] = {}
    slo = spec.latency.p95_ms
    ok = [
        rec
        for rec in m.serve_runs
        if _num(rec["result"], "rps") and (_num(rec["result"], "p95_ms") or 1e18) <= slo
        and not _num(rec["result"], "errors") and rec["result"].get("target", "feed") == "feed"
    ]  # fmt: skip
    if ok:
        best = max(ok, key=lambda r: _feed_rps(r["result"]))
        r = best["result"]
        cores, how = serve_cores(r)
        mix = (
            f"feed requests/s with {r['event_share']:.0%} of requests posting events"
            if _num(r, "event_share")
            else "feed requests/s"
        )
        workers = f", {int(w)} worker processes" if (w := _num(r, "workers")) else ""
        out["rps_per_core_at_slo"] = Quantity.measured(
            _feed_rps(r) / cores,
            "requests/s/core",
            f"{best['_path']} ({mix} / cores{workers}, p95 {r['p95_ms']} ms <= {slo:g}; "
            f"cores = {how})",
            best["command"],
            best["measured_at"],
        )
    floors = [r for r in m.serve_runs if _num(r["result"], "floor_rps")]
    if floors:
        best = max(floors, key=lambda r: float(r["result"]["floor_rps"]))
        cores, how = serve_cores(best["result"])
        out["floor_rps_per_core"] = Quantity.measured(
            float(best["result"]["floor_rps"]) / cores,
            "requests/s/core",
            f"{best['_path']} (floor_rps / cores; cores = {how})",
            best["command"],
            best["measured_at"],
        )
    for kind, name, unit, fn, what in _FROM_RECORDS:
        _take(out, m, kind, name, unit, fn, what)
    lag = _freshness(m)
    if lag is not None:
        rec, p99_ms = lag
        out["feature_lag_p99_s"] = Quantity.measured(
            p99_ms / 1000.0,
            "s",
            f"bench-freshness ({rec['result'].get('backend')}: lag_p99_ms / 1000)",
            rec["command"],
            rec["measured_at"],
        )
    return out


def _freshness(m: Measurements) -> tuple[dict[str, Any], float] | None:
    """The production backend's lag (redis) when measured, else the scale run's (Kafka, a
    consumer group of feature workers: ``demo --backends scale``), else the embedded one's."""
    by = {str(r["result"].get("backend")): r for r in m.freshness}
    stream = m.get("bench-stream")
    if stream is not None:  # {"runs": {"2w_5000eps": {..., "lag_p99_ms": ...}}}
        runs = [r for r in (stream["result"].get("runs") or {}).values() if isinstance(r, dict)]
        if runs and _num(runs[0], "lag_p99_ms") is not None:
            by.setdefault("kafka", {**stream, "result": {"backend": "kafka", **runs[0]}})
    for backend in ("redis", "kafka", "sqlite"):
        rec = by.get(backend)
        if rec is not None and (p99 := _num(rec["result"], "lag_p99_ms")) is not None:
            return rec, p99
    return None


def _take(
    out: dict[str, Quantity],
    m: Measurements,
    kind: str,
    name: str,
    unit: str,
    fn: Callable[[dict[str, Any]], float | None],
    what: str,
) -> None:
    rec = m.get(kind)
    if rec is None:
        return
    value = fn(rec["result"])
    if value is not None and value > 0:
        out[name] = m.cite(kind, what, value, unit)


def _ratio(a: float | None, b: float | None, scale: float = 1.0) -> float | None:
    return a / b * scale if a is not None and b else None


def _sum(a: float | None, b: float | None) -> float | None:
    return a + b if a is not None and b is not None else None


def _selected_p50(r: dict[str, Any]) -> float | None:
    for row in r.get("selection", []):
        if row.get("model") == r.get("selected"):
            return _num(row, "p50_ms")
    return None


def _scale_ms_per_user(r: dict[str, Any]) -> float | None:
    runs = r.get("runs") or {}
    order = sorted(runs, key=lambda e: e == "local")  # a Spark engine before the local one
    for engine in order:
        done = [x for x in runs[engine] if x.get("ok") and _num(x, "candidate_ms_per_user_core")]
        if done:
            best = max(done, key=lambda x: float(x["world_users"]))
            return _num(best, "candidate_ms_per_user_core")
    return None


Extract = Callable[[dict[str, Any]], "float | None"]

# (record kind, plan input, unit, value from the record's result, how it is computed)
_FROM_RECORDS: list[tuple[str, str, str, Extract, str]] = [
    ("candidates", "bytes_per_candidate", "bytes",
     lambda r: _ratio(_num(r, "bytes_per_user"), _num(r, "candidates_per_user")),
     "bytes_per_user / candidates_per_user"),
    ("candidates", "candidate_build_ms_per_user", "core-ms/user",
     lambda r: _ratio(_num(r, "seconds"), _num(r, "users"), 1000.0),
     "seconds / users x 1000, one process"),
    # At scale (bench scale, batch part), when measured: CPU time of the whole process tree per
    # user at the largest world that ran, Spark's engine first; it replaces the one-process rate.
    ("bench-scale-batch", "candidate_build_ms_per_user", "core-ms/user",
     lambda r: _scale_ms_per_user(r),
     "candidate_ms_per_user_core of the largest world run (CPU of the process tree / users)"),
    ("train", "train_s_per_million_events", "core-s/1M events",
     lambda r: _ratio(_num(r, "seconds", "total"),
                      _sum(_num(r, "data", "impressions"), _num(r, "data", "clicks")), 1e6),
     "seconds.total / (impressions + clicks) x 1e6"),
    ("train", "rank_ms_per_request", "core-ms/request", lambda r: _selected_p50(r),
     "selected ranker's p50_ms in the selection table"),
    ("bench-ingest", "ingest_events_per_s_per_core", "events/s/core",
     lambda r: _num(r, "embedded", "events_per_s"), "embedded.events_per_s, one core"),
    ("bench-worker", "worker_events_per_s_per_core", "events/s/core",
     lambda r: _num(r, "worker", "events_per_s"), "worker.events_per_s, one core"),
    ("bench-world", "stored_bytes_per_event", "bytes",
     lambda r: _num(r, "bytes_per_event"), "bytes_per_event of the JSONL log as received"),
    ("candidates", "model_state_bytes", "bytes", lambda r: _num(r, "model_state_bytes"),
     "model_state_bytes: the candidate sources' arrays a process would hold"),
    # The live run: every answered feed logs its impression, and the simulated users post
    # what they did (clicks, dwells, hides).
    ("live", "events_per_request", "events/request",
     lambda r: _ratio(_sum(_num(r, "events_accepted"), _num(r, "ok")), _num(r, "ok")),
     "(events_accepted + one impression per answered feed) / answered feeds"),
    ("bench-worker", "item_state_events_per_s_per_core", "events/s/core",
     lambda r: _num(r, "item_cache", "replay_events_per_s"), "item_cache.replay_events_per_s"),
    ("bench-replicas", "item_state_events_per_s_per_core", "events/s/core",
     lambda r: _num(r, "item_state", "events_per_s"),
     "item_state.events_per_s: the project's log through a serving process's article state"),
]  # fmt: skip
