"""The demo's online half: serve, live traffic, canary, monitors, plan and the report.

Each stage is a plain function of the ``DemoContext`` (demo/stages.py), like the offline ones,
and every number it produces is also a measurement record in ``PROJECT/measurements/``, which is
where the planner and the report read them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feedstack.core.spec import load_spec, render_spec
from feedstack.storage import measurements

if TYPE_CHECKING:
    from feedstack.demo.stages import DemoContext

# The online measurements each run ``ctx.online_seconds`` (demo --online-seconds, default 20 s):
# long enough for a stable p99, short enough for the demo's 10-minute budget.
LIVE_RATE_PER_S = 40.0
LIVE_SPEED = 360.0  # simulated seconds per wall second: 20 s of traffic = 2 simulated hours
# The serving requirement's reference load (p99 <= 15 ms at 300 requests/s).
SERVE_BENCH_RATE = 300.0


def _record(ctx: DemoContext, kind: measurements.Kind, result: dict[str, Any]) -> None:
    measurements.save(ctx.project / "measurements", measurements.record(kind, result))


def stage_candidates(ctx: DemoContext) -> dict[str, Any]:
    """The batch job: every user's top candidates into the candidate cache (on the spec's
    engine: Spark writes a Redis cache from the tasks of each region shard)."""
    from feedstack.batch import jobs
    from feedstack.batch.engine import Engine

    engine = Engine.from_spec(load_spec(ctx.project))
    result = jobs.candidate_build(ctx.project, engine)
    _record(ctx, "candidates", result)
    keep = (
        "version",
        "cache",
        "users",
        "candidates_per_user",
        "bytes_per_user",
        "seconds",
        "engine",
        "written_by",
    )
    return {k: result[k] for k in keep if k in result}


def stage_register(ctx: DemoContext) -> dict[str, Any]:
    """The trained model into the MLflow registry, with its lineage; the first is champion."""
    from feedstack.registry.mlflow_registry import register_trained

    rec = measurements.latest(ctx.project / "measurements", "train")
    if rec is None:
        raise RuntimeError("no train measurement to register")
    return register_trained(ctx.project, rec["result"], load_spec(ctx.project))


def serve_as_of_log(project: Path) -> None:
    """The world ends at the moment it was generated; by the time the server starts, minutes
    have passed and the newest articles are older than they were. ``serve.clock: log`` serves
    as of the newest event the server has read, which the live traffic then moves forward."""
    spec = load_spec(project)
    if spec.serve.clock != "log":
        spec = spec.model_copy(update={"serve": spec.serve.model_copy(update={"clock": "log"})})
        (project / "feedstack.yaml").write_text(render_spec(spec), encoding="utf-8")


def stage_serve(ctx: DemoContext) -> dict[str, Any]:
    """`feedstack serve` in a child process; simulated users request feeds over HTTP, click
    through the world's click model, and their events come back through the API."""
    from feedstack.bench.live import run_live_traffic
    from feedstack.bench.serve import ServerProcess, wait_ready
    from feedstack.monitor.scrape import fetch_text
    from feedstack.serve.auth import api_key_entry
    from feedstack.world import NewsWorld, load_world_config

    serve_as_of_log(ctx.project)
    # The live clients hold what a front end holds: a key scoped to feeds and events (feed
    # answers then say "degraded", not why: the reasons are in the server's metrics).
    key = secrets.token_hex(16)
    env = dict(os.environ, FEEDSTACK_API_KEYS=api_key_entry(key, "feeds", "events"))
    args = ["serve", "--project", str(ctx.project), "--port", "0", "--grpc-port", "0", "--json"]
    server = ServerProcess(args, env)
    try:
        addr = server.addresses(timeout_s=180.0)
        url = str(addr["http"])
        wait_ready(url, timeout_s=180.0)
        config = load_world_config(ctx.world_dir)
        world = NewsWorld(config)
        start = config.start + timedelta(days=config.days)
        # First the same users reading feeds only: the load the planner prices as serving
        # (its cores check compares like with like); then the full run, clicks posted back.
        feeds_only = run_live_traffic(
            url,
            world,
            start,
            api_key=key,
            duration_s=max(2.0, ctx.online_seconds / 2),
            rate_per_s=LIVE_RATE_PER_S,
            speed=LIVE_SPEED,
            seed=ctx.seed + 1,
            server_pid=server.proc.pid,
            post_events=False,
        )
        live = run_live_traffic(
            url,
            world,
            start,
            api_key=key,
            duration_s=ctx.online_seconds,
            rate_per_s=LIVE_RATE_PER_S,
            speed=LIVE_SPEED,
            seed=ctx.seed,
            server_pid=server.proc.pid,
        )
        live["feeds_only"] = {
            k: feeds_only.get(k)
            for k in ("rps", "p50_ms", "p99_ms", "server_cpu_s", "server_cores", "duration_s")
        }
        live["feeds_only"]["elapsed_s"] = feeds_only["duration_s"]
        metrics_text = fetch_text(f"{url}/metrics")
    finally:
        code = server.stop()
    monitor_dir = ctx.project / "monitor"
    monitor_dir.mkdir(parents=True, exist_ok=True)
    (monitor_dir / "live-metrics.prom").write_text(metrics_text, encoding="utf-8")
    live["elapsed_s"] = live["duration_s"]
    live["protocol"] = "http"
    _record(ctx, "live", live)
    if code not in (0, -15):
        raise RuntimeError(f"feedstack serve exited {code}: {server.stderr_tail()}")
    live.pop("latencies_ms")
    return live | {"server_exit": code, "metrics_file": str(monitor_dir / "live-metrics.prom")}


def stage_serve_bench(ctx: DemoContext) -> dict[str, Any]:
    """The load benchmark at the serving requirement's reference rate (a separate
    load-generator process)."""
    from feedstack.bench.serve import run_serve_bench

    result = run_serve_bench(
        ctx.project, rate=SERVE_BENCH_RATE, duration_s=ctx.online_seconds, warmup_s=1.0
    )
    _record(ctx, "serve", result)
    keep = ("rps", "p50_ms", "p95_ms", "p99_ms", "errors", "floor_rps", "rate", "workers",
            "event_share", "events_p99_ms", "server_cores")  # fmt: skip
    return {k: result[k] for k in keep if k in result}


def stage_freshness(ctx: DemoContext) -> dict[str, Any]:
    """Event -> online feature lag at the reference 5,000 events/s on the embedded stack."""
    from feedstack.bench.freshness import run_freshness_bench
    from feedstack.features.definitions import ONLINE_AT_TICKS

    result = run_freshness_bench(
        duration_s=ctx.online_seconds, sink="feast", tick_only_views=ONLINE_AT_TICKS
    )
    _record(ctx, "bench-freshness", {"backend": "sqlite", **result})
    keep = ("events_per_s", "lag_p50_ms", "lag_p95_ms", "lag_p99_ms", "meets_target")
    return {k: result[k] for k in keep if k in result}


def stage_rollout(ctx: DemoContext) -> dict[str, Any]:
    """Canaries on simulated traffic: a shuffled ranker rolled back, a better one promoted, and
    an A/B test whose lift interval is checked against the world's true lift."""
    from feedstack.registry.benchmarks import sim_world_of
    from feedstack.registry.rollout_demo import run_rollout_demo
    from feedstack.world import load_world_config

    rec = measurements.latest(ctx.project / "measurements", "train")
    result = run_rollout_demo(
        ctx.project,
        trained=rec["result"] if rec else None,
        world=sim_world_of(load_world_config(ctx.world_dir)),
    )
    _record(ctx, "rollout-demo", result)
    return result


def stage_monitor(ctx: DemoContext) -> dict[str, Any]:
    """Alert rules and dashboard from the spec (checked by promtool when installed), and the
    drift + slowdown scenario: injected after a steady simulated hour, when was each caught,
    by the scenario's own evaluation and by a real Prometheus (``prometheus``: the alerts read
    back from its API, seconds from the injection to firing). Prometheus also scrapes a serving
    replica of the project (``feedstack serve`` with simulated users reading their feeds)."""
    from feedstack.monitor.prometheus import Target, prometheus_path
    from feedstack.monitor.stage import run_monitor_stage

    spec = load_spec(ctx.project)
    out = ctx.project / "monitor"
    if prometheus_path() is None:
        result = run_monitor_stage(spec, out, seed=ctx.seed)
    else:
        with _serving_replica(ctx) as (host_port, console_url):
            target = Target("feedstack-serve", host_port)
            result = run_monitor_stage(spec, out, seed=ctx.seed, extra_targets=[target])
        result["prometheus"]["console"] = console_url
    _record(ctx, "drift", result["scenario"])
    if "skipped" not in result["prometheus"]:
        _record(ctx, "prometheus-alerts", result["prometheus"])
    return {k: result[k] for k in ("headline", "files", "promtool", "prometheus")}


@contextmanager
def _serving_replica(ctx: DemoContext) -> Iterator[tuple[str, str]]:
    """``feedstack serve`` on the project with simulated users reading their feeds in a thread;
    yields its HOST:PORT and the console's path."""
    import threading

    from feedstack.bench.live import run_live_traffic
    from feedstack.bench.serve import ServerProcess, wait_ready
    from feedstack.world import NewsWorld, load_world_config

    serve_as_of_log(ctx.project)
    env = {k: v for k, v in os.environ.items() if k != "FEEDSTACK_API_KEYS"}
    key = secrets.token_hex(16)
    env["FEEDSTACK_API_KEYS"] = key  # feeds and events
    args = ["serve", "--project", str(ctx.project), "--port", "0", "--grpc-port", "0", "--json"]
    server = ServerProcess(args, env)
    stop = threading.Event()
    thread: threading.Thread | None = None
    try:
        addr = server.addresses(timeout_s=180.0)
        url = str(addr["http"])
        wait_ready(url, timeout_s=180.0)
        config = load_world_config(ctx.world_dir)
        world = NewsWorld(config)
        start = config.start + timedelta(days=config.days)

        def users() -> None:
            seed = ctx.seed + 100
            while not stop.is_set():
                run_live_traffic(url, world, start, api_key=key, duration_s=5.0,
                                 rate_per_s=10.0, speed=LIVE_SPEED, threads=2, seed=seed,
                                 post_events=False)  # fmt: skip
                seed += 1

        thread = threading.Thread(target=users, name="demo-users", daemon=True)
        thread.start()
        yield url.removeprefix("http://"), "/console"
    finally:
        stop.set()
        if thread is not None:
            thread.join(timeout=30.0)
        server.stop()


def stage_report(ctx: DemoContext) -> dict[str, Any]:
    """The capacity and cost plan and the design report, from the spec and the measurements."""
    from feedstack.report.build import build_report
    from feedstack.report.measured import plan_from_measurements

    spec = load_spec(ctx.project)
    folder = ctx.project / "measurements"
    plan = plan_from_measurements(spec, folder)
    _record(ctx, "plan", plan)
    report_dir = ctx.out / "report"
    doc = build_report(spec, folder, report_dir)
    answers = doc.get("problem", {}).get("answers")
    keep = ("peak_qps", "serving_cores", "redis_gb", "monthly_cost_usd", "budget_usd")
    return {k: plan[k] for k in keep if k in plan} | {
        "within_budget": plan.get("within_budget"),
        "bottleneck": plan.get("bottleneck"),
        "answers": answers,
        "report": str(report_dir / "report.html"),
    }
