"""``feedstack bench ...``: measure, record in measurements/, render docs/benchmarks.md."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from feedstack.bench.targets import NOTES, REPORT_KINDS, SERVE_RUNS, TARGETS
from feedstack.cli import console_cmd, replicas_cmd, serve_cmd, stream_cmd, worker_cmd
from feedstack.cli.common import (
    JsonOption,
    ProjectOption,
    cli_errors,
    console,
    emit_json,
    project_dir,
    record_measurement,
)
from feedstack.storage import measurements

app = typer.Typer(
    help="Benchmarks: measure against a same-run baseline and record the numbers.",
    no_args_is_help=True,
)


def _redis_url(redis: bool) -> str | None:
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0") if redis else None


@app.command("ingest")
def ingest(
    events: int = typer.Option(1_000_000, "--events", min=1000, help="Events to ingest."),
    batch: int = typer.Option(5_000, "--batch", min=1, help="Events per durable batch."),
    redis: bool = typer.Option(True, "--redis/--no-redis", help="Also measure Redis Streams."),
    project: Path | None = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Ingest throughput (embedded SQLite and Redis Streams) against the bare-store floor."""
    from feedstack.bench.ingest import run_ingest_bench

    with cli_errors():
        record_measurement(
            "bench-ingest", run_ingest_bench(events, batch, _redis_url(redis)), project, as_json
        )


@app.command("world")
def world(
    users: int = typer.Option(100_000, "--users", min=1, help="Users in the timed world."),
    big_users: int = typer.Option(
        1_000_000, "--big-users", min=0, help="Users in the memory run (0 skips it)."
    ),
    project: Path | None = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """World generation speed and peak memory."""
    from feedstack.bench.world import run_world_bench

    with cli_errors():
        record_measurement(
            "bench-world", run_world_bench(users=users, big_users=big_users), project, as_json
        )


def _feature_benches(quick: bool) -> list[dict[str, Any]]:
    """Freshness on the embedded stack and on Redis (Feast as the store of record), worker
    throughput and memory, and the online user-feature lookup."""
    from feedstack.bench.features import run_feature_lookup_bench
    from feedstack.bench.freshness import run_freshness_bench
    from feedstack.bench.worker_capacity import run_worker_bench
    from feedstack.features.definitions import ONLINE_AT_TICKS

    url = _redis_url(True)
    # 90 s: every window contains at least one minute tick (the worker's worst moment).
    duration = 5.0 if quick else 90.0
    out = []
    for backend, sink in (("sqlite", "feast"), ("redis", "feast-redis")):
        console.print(f"[bold]bench freshness[/bold] ({backend}, {sink})")
        res = run_freshness_bench(
            5_000, duration, backend, url, sink=sink, tick_only_views=ONLINE_AT_TICKS
        )
        out.append(measurements.record("bench-freshness", {"backend": backend, **res}))
    console.print("[bold]bench worker[/bold]")
    res = run_worker_bench(
        events=50_000 if quick else 1_000_000, big_users=0 if quick else 1_000_000
    )
    out.append(measurements.record("bench-worker", res))
    console.print("[bold]bench features[/bold] (online lookups)")
    out.append(measurements.record("bench-features", run_feature_lookup_bench(url)))
    return out


def _serving_project(work: Path, quick: bool) -> Path:
    """A trained project with a filled candidate cache: the demo's offline stages at demo size
    (the serving, rollout and monitoring benchmarks need a model and users)."""
    from feedstack.demo import online
    from feedstack.demo.stages import STAGES, DemoContext, run_stage

    ctx = DemoContext(
        out=work,
        users=300 if quick else 5_000,
        articles=150 if quick else 1_500,
        days=1 if quick else 3,
        seed=7,
    )
    offline = ("project", "world", "ingest", "features", "train", "candidates")
    for name, title, fn in STAGES:
        if name in offline:
            console.print(f"[dim]serving project:[/dim] {title}")
            run_stage(ctx, name, fn)
    online.serve_as_of_log(ctx.project)
    return ctx.project


def _serving_benches(quick: bool, work: Path, soak_minutes: float) -> list[dict[str, Any]]:
    """The feed API under load (HTTP at the reference 300 req/s and at saturation, gRPC, the
    candidate cache in Redis; every worker, 10 % of requests posting events), the request path
    in-process, the soak, the targets summary, metric overhead, the canary and A/B benchmarks
    and the drift scenario."""
    from feedstack.bench.metrics_overhead import run_metrics_overhead
    from feedstack.bench.serve import run_serve_bench
    from feedstack.bench.serve_inproc import run_serve_inproc_bench
    from feedstack.bench.serve_targets import serving_targets
    from feedstack.bench.soak import run_soak_bench
    from feedstack.core.spec import load_spec, render_spec
    from feedstack.monitor.scenario import ScenarioConfig, run_drift_scenario
    from feedstack.registry.benchmarks import run_abtest_bench, run_rollout_bench
    from feedstack.train.candidate_cache import build_candidate_cache

    project = _serving_project(work, quick)
    seconds = 3.0 if quick else 20.0
    out = []
    for protocol, rate in (("http", 300.0), ("http", None), ("grpc", 300.0), ("grpc", None)):
        console.print(f"[bold]bench serve[/bold] ({protocol}, rate {rate or 'saturation'})")
        res = run_serve_bench(project, protocol=protocol, rate=rate, duration_s=seconds)
        out.append(measurements.record("serve", res))
    # The same at 300 req/s with the candidate cache in Redis (rebuilt there).
    spec_file = project / "feedstack.yaml"
    embedded = spec_file.read_text(encoding="utf-8")
    spec = load_spec(project)
    prefix = f"fsbench{os.getpid()}"
    url = f"{_redis_url(True)}?prefix={prefix}"
    redis_spec = spec.model_copy(
        update={"backends": spec.backends.model_copy(update={"candidate_cache": url})}
    )
    spec_file.write_text(render_spec(redis_spec), encoding="utf-8")
    try:
        build_candidate_cache(project)
        console.print("[bold]bench serve[/bold] (http, 300 req/s, candidate cache in Redis)")
        res = run_serve_bench(project, protocol="http", rate=300.0, duration_s=seconds)
        out.append(measurements.record("serve", res))
        console.print("[bold]bench replicas[/bold] (2 replicas behind HAProxy, by region)")
        out.append(measurements.record("bench-replicas", _replicas(project, seconds, res)))
    finally:
        spec_file.write_text(embedded, encoding="utf-8")
        _drop_redis_prefix(url, prefix)
    console.print("[bold]bench serve-inproc[/bold] (request path, 100,000 articles)")
    res = run_serve_inproc_bench(
        project, 2_000 if quick else 100_000, 200 if quick else 1_000, 300 if quick else 3_000
    )
    out.append(measurements.record("bench-request-path", res))
    console.print("[bold]bench rankers[/bold] (LightGBM, lleaves, tl2cgen on 500-row blocks)")
    from feedstack.bench.rankers import run_ranker_bench

    out.append(
        measurements.record("bench-rankers", run_ranker_bench(project, 60 if quick else 300))
    )
    if soak_minutes > 0:
        console.print(f"[bold]bench soak[/bold] ({soak_minutes:g} min at 200 req/s, events)")
        soak_s = soak_minutes * 60.0
        res = run_soak_bench(project, duration_s=soak_s, settle_s=min(120.0, soak_s / 5))
        out.append(measurements.record("bench-soak", res))
    out.append(measurements.record("serve-targets", serving_targets(out)))
    console.print("[bold]monitor overhead[/bold] (metrics on vs off, one run)")
    res = run_metrics_overhead(project, rate=100.0, duration_s=seconds, rounds=1 if quick else 2)
    out.append(measurements.record("metrics-overhead", res))
    console.print("[bold]bench rollout[/bold] and [bold]bench abtest[/bold] (simulated world)")
    spec = load_spec(project)
    out.append(
        measurements.record(
            "bench-rollout", run_rollout_bench(spec, bad_reps=3 if quick else 20, good_reps=1)
        )
    )
    out.append(
        measurements.record("bench-abtest", run_abtest_bench(spec, repetitions=2 if quick else 20))
    )
    console.print("[bold]monitor scenario[/bold] (drift and slowdown detection)")
    out.append(measurements.record("drift", run_drift_scenario(spec, ScenarioConfig()).summary()))
    return out


def _replicas(project: Path, seconds: float, single: dict[str, Any]) -> dict[str, Any]:
    """Two replicas at the single server's rate; the planner's cores for it from that run's
    requests/s per core (feeds / the server's cores) against the cores the replicas used."""
    from feedstack.bench.replicas import haproxy_path, run_replicas_bench
    from feedstack.plan.check import check_serving_cores

    if haproxy_path() is None:
        return {"skipped": "haproxy is not installed (Debian package haproxy)"}
    res = run_replicas_bench(project, replicas=2, rate=300.0, duration_s=seconds)
    per_core = single["feed_rps"] / single["server_cores"] if single.get("server_cores") else 0
    if per_core > 0 and res.get("server_cpu_s"):
        check = check_serving_cores(
            res["feed_rps"], per_core, res["server_cpu_s"], res["elapsed_s"]
        )
        res["planner_check"] = check.to_json() | {"rps_per_core_source": "serve, same project"}
    return res


def _drop_redis_prefix(url: str, prefix: str) -> None:
    from feedstack.storage.urls import redis_client

    client = redis_client(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1_000))
    for i in range(0, len(keys), 1_000):
        client.delete(*keys[i : i + 1_000])
    client.close()


@app.command("all")
def all_(
    out: Path = typer.Option(Path("docs/benchmarks.md"), "--out", help="Markdown file to write."),
    quick: bool = typer.Option(
        False, "--quick", help="Small sizes (a smoke run, not the numbers)."
    ),
    work: Path | None = typer.Option(
        None, "--work", help="Folder for the serving benchmarks' project (default bench-out)."
    ),
    soak_minutes: float | None = typer.Option(
        None,
        "--soak-minutes",
        min=0.0,
        help="Length of the serving soak (default 10, --quick 0.5; 0 skips it).",
    ),
    project: Path | None = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Run every benchmark and write the markdown report."""
    from feedstack.bench.ingest import run_ingest_bench
    from feedstack.bench.markdown import render
    from feedstack.bench.world import run_world_bench

    with cli_errors():
        folder = project_dir(project) / "measurements"
        records = []
        console.print("[bold]bench ingest[/bold]")
        ingest_events = 50_000 if quick else 1_000_000
        res = run_ingest_bench(ingest_events, 5_000, _redis_url(True))
        records.append(measurements.record("bench-ingest", res))
        console.print("[bold]bench world[/bold]")
        res = run_world_bench(
            users=2_000 if quick else 100_000, big_users=0 if quick else 1_000_000
        )
        records.append(measurements.record("bench-world", res))
        records.extend(_feature_benches(quick))
        console.print("[bold]bench stream[/bold] (Kafka consumer group: 1 and 2 workers)")
        from feedstack.bench.stream_scale import run_stream_bench

        res = run_stream_bench(duration_s=4.0 if quick else 15.0)
        records.append(measurements.record("bench-stream", res))
        soak = soak_minutes if soak_minutes is not None else 0.5 if quick else 10.0
        records.extend(_serving_benches(quick, Path(work) if work else Path("bench-out"), soak))
        records.extend(_scale_bench(quick, Path(work) if work else Path("bench-out")))
        gowalla_dir = Path("../shared/data/gowalla")
        if not quick and gowalla_dir.is_dir():
            from feedstack.bench.gowalla import run_gowalla_bench

            console.print("[bold]bench gowalla[/bold] (train.txt -> test.txt)")
            res = run_gowalla_bench(gowalla_dir, split="test")
            records.append(measurements.record("bench-gowalla", res))
            from feedstack.bench.gowalla_serve import run_gowalla_serve_bench

            console.print("[bold]bench gowalla-serve[/bold] (10,000 users: train, build, serve)")
            res = run_gowalla_serve_bench(
                gowalla_dir / "train.txt", Path(work) if work else Path("bench-out"), say=_say
            )
            records.append(measurements.record("bench-gowalla-serve", res))
        for rec in records:
            measurements.save(folder, rec)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render(records, TARGETS, NOTES), encoding="utf-8")
        console_cmd.screenshot_for_bench(out.parent / "console.png", work)
        if as_json:
            emit_json({"out": str(out), "results": {r["kind"]: r["result"] for r in records}})
        else:
            console.print(f"wrote {out}")


@app.command("scale")
def scale(
    users: int = typer.Option(
        1_000_000, "--users", min=1_000, help="Users of the largest world (~10 events/user-day)."
    ),
    days: float = typer.Option(1.0, "--days", min=0.1, help="Days of events."),
    engines: str = typer.Option(
        "local,local[2]", "--engines", help="Comma-separated engines to compare."
    ),
    limit_gb: float = typer.Option(20.0, "--limit-gb", min=1.0, help="Memory limit of a run."),
    steps: int = typer.Option(
        3, "--steps", min=1, max=6, help="World sizes: users / 4^k for k < steps."
    ),
    budget_s: float = typer.Option(
        4 * 3600.0, "--budget-s", min=60.0, help="No step is started that would end past it."
    ),
    work: Path = typer.Option(
        Path("bench-out") / "scale", "--work", help="Folder for the worlds (kept for re-runs)."
    ),
    project: Path | None = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """The batch path at scale on each engine: backfill, training rows, candidate build.

    Wall time, peak RSS of the whole process tree (Spark's JVM and Python workers included),
    users per core-second of the candidate build, and the largest world under --limit-gb."""
    from feedstack.bench.batch_scale import run_batch_scale
    from feedstack.core.spec import check_engine

    with cli_errors():
        names = tuple(check_engine(e.strip()) for e in engines.split(",") if e.strip())

        def say(msg: str) -> None:
            console.print(msg, highlight=False)

        result = run_batch_scale(
            users,
            days=days,
            engines=names,
            limit_gb=limit_gb,
            steps=steps,
            budget_s=budget_s,
            workdir=work,
            say=say,
        )
        record_measurement("bench-scale-batch", result, project, as_json)


def _scale_bench(quick: bool, work: Path) -> list[dict[str, Any]]:
    """The batch part of the scale benchmark, short: 100k users (1M events) in two steps on
    both engines (the full 1M-user run: `feedstack bench scale`); skipped without Spark."""
    from feedstack.batch.engine import spark_missing
    from feedstack.bench.batch_scale import run_batch_scale

    why = spark_missing()
    engines: tuple[str, ...] = ("local",) if why else ("local", "local[2]")
    console.print(f"[bold]bench scale[/bold] (batch part, {', '.join(engines)})")
    res = run_batch_scale(
        8_000 if quick else 100_000,
        engines=engines,
        steps=2,
        model_users=1_000 if quick else 5_000,
        workdir=work / "scale",
    )
    if why:
        res["spark_skipped"] = why
    return [measurements.record("bench-scale-batch", res)]


app.command("freshness")(worker_cmd.bench_freshness)
app.command("stream")(stream_cmd.bench_stream)
app.command("worker")(worker_cmd.bench_worker)
app.command("serve")(serve_cmd.bench_serve)
app.command("replicas")(replicas_cmd.bench_replicas)


# What a reader of docs/benchmarks.md must know beside the numbers (kept with the code that
# measures them; update when the measurement changes).


@app.command("rankers")
def rankers(
    blocks: int = typer.Option(300, "--blocks", min=10, help="500-row blocks to score."),
    project: Path | None = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """The ranker's backends side by side (LightGBM, lleaves, tl2cgen, ...): same blocks, same
    scores checked, speed per 500-row block. Records kind "bench-rankers"."""
    from feedstack.bench.rankers import run_ranker_bench

    with cli_errors():
        root = project_dir(project)
        record_measurement("bench-rankers", run_ranker_bench(root, blocks), root, as_json)


@app.command("gowalla")
def gowalla(
    data: Path = typer.Option(
        Path("../shared/data/gowalla"), "--data", help="Folder with train.txt, test.txt, tuning/."
    ),
    split: str = typer.Option("test", "--split", help="test (train -> test) or tuning."),
    project: Path | None = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """The public accuracy benchmark: the two-stage pipeline on Gowalla (LightGCN protocol)."""
    from feedstack.bench.gowalla import run_gowalla_bench
    from feedstack.core.errors import InputError

    with cli_errors():
        if split not in ("test", "tuning"):
            raise InputError(f"--split must be test or tuning, got {split!r}")
        if not data.is_dir():
            raise InputError(f"--data {data}: no such folder")
        record_measurement("bench-gowalla", run_gowalla_bench(data, split=split), project, as_json)


@app.command("gowalla-serve")
def gowalla_serve(
    train: Path = typer.Option(
        Path("../shared/data/gowalla/train.txt"), "--train", help="LightGCN-format interactions."
    ),
    users: int = typer.Option(10_000, "--users", min=2, help="First N users of the file."),
    rate: float = typer.Option(300.0, "--rate", min=1.0, help="Feed requests per second."),
    duration: float = typer.Option(20.0, "--duration", min=1.0, help="Seconds at that rate."),
    work: Path = typer.Option(Path("bench-out"), "--work", help="Folder for the project."),
    project: Path | None = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """An interaction log served end to end: init, ingest (lightgcn), train (interactions),
    candidates build, serve; p99 of the feed API at RATE. Records kind "bench-gowalla-serve"."""
    from feedstack.bench.gowalla_serve import run_gowalla_serve_bench

    with cli_errors():
        res = run_gowalla_serve_bench(
            train, work, users=users, rate=rate, duration_s=duration, say=_say
        )
        record_measurement("bench-gowalla-serve", res, project, as_json)


def _say(message: str) -> None:
    console.print(f"[dim]{message}[/dim]", highlight=False)


app.command("console")(console_cmd.bench_console)


@app.command("report")
def report(
    out: Path = typer.Option(Path("docs/benchmarks.md"), "--out", help="Markdown file to write."),
    project: Path | None = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Render the newest recorded measurement of each benchmark (no new measurement)."""
    from feedstack.bench.markdown import render

    with cli_errors():
        folder = project_dir(project) / "measurements"
        records = [r for k in REPORT_KINDS if (r := measurements.latest(folder, k)) is not None]
        records[2:2] = measurements.latest_by(folder, "bench-freshness", "backend")
        serve_runs = measurements.records(folder, "serve")[-SERVE_RUNS:]
        records[7:7] = [rec for _, rec in serve_runs]
        out.write_text(render(records, TARGETS, NOTES), encoding="utf-8")
        if as_json:
            emit_json({"out": str(out), "kinds": [r["kind"] for r in records]})
        else:
            console.print(f"wrote {out} from {len(records)} records in {folder}")
