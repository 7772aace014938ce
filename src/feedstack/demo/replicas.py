"""The demo's replicas stage: the project served by several replicas behind HAProxy, and the
planner's prediction for that load checked against the cores the replicas used."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feedstack.storage import measurements

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

    got_values = [result.get(k) for k in ("feed_rps", "server_cpu_s", "elapsed_s")]
    values = [float(v) for v in got_values if isinstance(v, int | float) and v > 0]
    if len(values) != 3:
        return None
    rps, cpu, wall = values
    _, inputs = resolve(load_spec(project), project / "measurements")
    per_core = inputs.rps_per_core_at_slo
    got = check_serving_cores(rps, per_core.value, cpu, wall)
    return {**got.to_json(), "rps_per_core_source": per_core.to_json()}


@contextmanager
def redis_candidate_cache(project: Path) -> Iterator[str]:
    """The project's candidate cache moved to Redis for a while (rebuilt there under a prefix of
    its own; the spec restored and the keys dropped after): the store replicas share. A project
    already on Redis is left as it is."""
    from feedstack.core.spec import load_spec, render_spec
    from feedstack.storage.urls import redis_client
    from feedstack.train.candidate_cache import build_candidate_cache

    spec_file = project / "feedstack.yaml"
    spec = load_spec(project)
    if spec.backends.candidate_cache.startswith("redis://"):
        yield spec.backends.candidate_cache
        return
    before = spec_file.read_text(encoding="utf-8")
    prefix = f"fsreplicas{os.getpid()}"
    base = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    url = f"{base}?prefix={prefix}"
    backends = spec.backends.model_copy(update={"candidate_cache": url})
    spec_file.write_text(render_spec(spec.model_copy(update={"backends": backends})), "utf-8")
    try:
        build_candidate_cache(project)
        yield url
    finally:
        spec_file.write_text(before, encoding="utf-8")
        client = redis_client(base)
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1_000))
        for i in range(0, len(keys), 1_000):
            client.delete(*keys[i : i + 1_000])
        client.close()


def stage_replicas(ctx: DemoContext) -> dict[str, Any]:
    """Two replicas of `feedstack serve` sharded by region behind HAProxy (started and stopped
    here), the candidate cache in Redis (the store they share), the planner's cores for that
    load vs measured; and the event intake's own rate (batch ingest, embedded and Redis)."""
    from feedstack.bench.ingest import run_ingest_bench
    from feedstack.bench.replicas import haproxy_path, run_replicas_bench

    folder = ctx.project / "measurements"
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    ingest = run_ingest_bench(INGEST_EVENTS, 5_000, redis_url)
    measurements.save(folder, measurements.record("bench-ingest", ingest))
    out: dict[str, Any] = {"ingest_events_per_s": ingest.get("embedded", {}).get("events_per_s")}
    if haproxy_path() is None:
        return {**out, "skipped": "haproxy is not installed (Debian package haproxy)"}
    with redis_candidate_cache(ctx.project):
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
