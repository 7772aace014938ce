"""The demo's replicas stage: the project served by several replicas behind HAProxy, and the
planner's prediction for that load checked against the cores the replicas used."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from feedstack.bench import measurements

if TYPE_CHECKING:
    from feedstack.demo.stages import DemoContext

REPLICAS = 2
REPLICAS_RATE = 300.0  # requests/s through the balancer (open loop): the serve stage's rate
INGEST_EVENTS = 100_000  # the event intake's own measurement (batch ingest, one core)


def planner_check(project: Path, result: dict[str, Any]) -> dict[str, Any] | None:
    """The planner's busy cores for the run's feed rate (requests/s per core at the SLO, from
    the project's measurements) against the cores the replicas used (CPU / wall time)."""
    from feedstack.core.spec import load_spec
    from feedstack.plan.check import check_serving_cores
    from feedstack.report.measured import resolve

    rps, cpu, wall = result.get("feed_rps"), result.get("server_cpu_s"), result.get("elapsed_s")
    if not all(isinstance(v, int | float) and v > 0 for v in (rps, cpu, wall)):
        return None
    _, inputs = resolve(load_spec(project), project / "measurements")
    per_core = inputs.rps_per_core_at_slo
    got = check_serving_cores(float(rps), per_core.value, float(cpu), float(wall))
    return {**got.to_json(), "rps_per_core_source": per_core.to_json()}


def stage_replicas(ctx: DemoContext) -> dict[str, Any]:
    """Two replicas of `feedstack serve` sharded by region behind HAProxy (started and stopped
    here), the planner's cores for that load vs measured; and the event intake's own rate."""
    from feedstack.bench.ingest import run_ingest_bench
    from feedstack.bench.replicas import haproxy_path, run_replicas_bench
    from feedstack.core.spec import load_spec

    folder = ctx.project / "measurements"
    redis_url = None
    cache = load_spec(ctx.project).backends.candidate_cache
    if cache.startswith("redis://"):
        redis_url = cache.split("?", 1)[0]
    ingest = run_ingest_bench(INGEST_EVENTS, 5_000, redis_url)
    measurements.save(folder, measurements.record("bench-ingest", ingest))
    out: dict[str, Any] = {"ingest_events_per_s": ingest.get("embedded", {}).get("events_per_s")}
    if haproxy_path() is None:
        return {**out, "skipped": "haproxy is not installed (Debian package haproxy)"}
    result = run_replicas_bench(
        ctx.project,
        replicas=REPLICAS,
        rate=REPLICAS_RATE,
        duration_s=ctx.online_seconds,
        warmup_s=1.0,
    )
    result["planner_check"] = planner_check(ctx.project, result)
    measurements.save(folder, measurements.record("bench-replicas", result))
    keep = ("replicas", "rps", "feed_rps", "p50_ms", "p95_ms", "p99_ms", "errors",
            "requests_per_replica", "server_cores", "balancer_cpu_s", "candidate_cache",
            "item_state", "planner_check")  # fmt: skip
    return out | {k: result[k] for k in keep}
