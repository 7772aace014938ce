"""``feedstack worker run``: the streaming feature worker; also ``features backfill`` and the
``bench freshness`` / ``bench worker`` commands (functions registered by main.py / bench_cmd.py)."""

from __future__ import annotations

import os
import signal
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from feedstack.cli.common import (
    EngineOption,
    JsonOption,
    ProjectOption,
    cli_errors,
    console,
    emit_json,
    record_measurement,
)
from feedstack.cli.common import project_dir as _project_dir
from feedstack.core.errors import InputError
from feedstack.features.definitions import ONLINE_AT_TICKS

if TYPE_CHECKING:  # the CLI imports nothing heavy before a command runs
    from feedstack.features.sink import FeatureSink

app = typer.Typer(help="The streaming feature worker.", no_args_is_help=True)

CHECKPOINT = Path("data") / "features" / "worker-checkpoint.npz"
# On a Kafka log: one checkpoint per partition (and the global views' shares) in this folder,
# which every member of the worker group must share.
GROUP_CHECKPOINTS = Path("data") / "features" / "group"


def checkpoint_path(project: Path) -> Path:
    return project / CHECKPOINT


TickOnlyOption = typer.Option(
    list(ONLINE_AT_TICKS),
    "--tick-only",
    help="A view written online only at minute ticks, not every batch (repeatable); "
    "e.g. article_stats when serving reads item features from its in-memory cache.",
)
SinkOption = typer.Option(
    "feast",
    "--sink",
    help="feast (the feature store of record) or memory (rows computed and dropped on exit: "
    "to measure, or to warm a checkpoint).",
)


def _check_views(views: list[str]) -> None:
    from feedstack.features.definitions import VIEWS_BY_NAME

    for v in views:
        if v not in VIEWS_BY_NAME:
            raise InputError(f"--tick-only {v!r}: not a view; valid: {', '.join(VIEWS_BY_NAME)}")


def open_sink(project: Path, kind: str) -> FeatureSink:
    if kind == "memory":
        from feedstack.features.sink import MemorySink

        return MemorySink()
    if kind == "feast":
        from feedstack.features.feast_store import open_feature_sink

        return open_feature_sink(project)
    raise InputError(f"--sink must be feast or memory, got {kind!r}")


@app.command("run")
def run(
    project: Path | None = ProjectOption,
    once: bool = typer.Option(False, "--once", help="Drain the log, finish, checkpoint, exit."),
    sink_kind: str = SinkOption,
    tick_only: list[str] = TickOnlyOption,
    batch: int = typer.Option(5_000, "--batch", min=1, help="Events per micro-batch at most."),
    checkpoint_every_s: float = typer.Option(
        10.0, "--checkpoint-every-s", min=0.0, help="Seconds between checkpoints."
    ),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", help="Serve Prometheus metrics on this port."
    ),
    consumer: str | None = typer.Option(
        None,
        "--consumer",
        help="This member's name in the consumer group (Kafka, Redis); default host-pid.",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Tail the event log into features: snapshot rows offline, latest values online.

    Resumes from its checkpoint (data/features/worker-checkpoint.npz). On a kafka:// log, run
    several of these: they form one consumer group and split the partitions, each partition
    with its own checkpoint in data/features/group/. SIGINT/SIGTERM stop it after the current
    batch with a final checkpoint."""
    from feedstack.core.spec import load_spec
    from feedstack.features.group_worker import GroupWorker
    from feedstack.features.worker import FeatureWorker, WorkerConfig
    from feedstack.storage.deadletter import open_dead_letter
    from feedstack.storage.eventlog import open_event_log
    from feedstack.storage.kafka_log import KafkaEventLog

    with cli_errors():
        proj = _project_dir(project)
        spec = load_spec(proj)
        log = open_event_log(spec.backends.event_log, proj)
        sink = open_sink(proj, sink_kind)
        _check_views(tick_only)
        member = consumer or f"{socket.gethostname()}-{os.getpid()}"
        config = WorkerConfig(
            max_batch=batch,
            checkpoint_every_s=checkpoint_every_s,
            tick_only_views=tuple(tick_only),
            consumer=member,
        )
        worker: FeatureWorker | GroupWorker
        where = checkpoint_path(proj)
        if isinstance(log, KafkaEventLog):
            where = proj / GROUP_CHECKPOINTS
            worker = GroupWorker(log, sink, where, config)
        else:
            worker = FeatureWorker.open(log, sink, where, config)
        worker.dead_letter = open_dead_letter(spec.backends.dead_letter, proj)
        if metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(metrics_port, registry=worker.metrics.registry)
        stopping = threading.Event()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stopping.set())
        if not as_json:
            start = getattr(worker, "offset", None) or "its checkpoints"
            console.print(f"worker {member}: {log.url} -> {sink_kind} sink, from {start}")
        report = worker.run(once=once, stop=stopping.is_set)
        worker.close()
        log.close()
        result = report.to_dict()
        result.update(sink=sink_kind, checkpoint=str(where), consumer=member)
        if isinstance(worker, GroupWorker):
            result["partitions"] = sorted(worker.tasks)
        if as_json:
            emit_json(result)
        else:
            console.print_json(data=result)


def backfill(
    project: Path | None = ProjectOption,
    source: str = typer.Option("log", "--from", help="log (the event log) or parquet (offline)."),
    checkpoint: bool = typer.Option(
        True, "--checkpoint/--no-checkpoint", help="Save a checkpoint the worker resumes from."
    ),
    sink_kind: str = SinkOption,
    engine: str | None = EngineOption,
    as_json: bool = JsonOption,
) -> None:
    """Compute every feature over the whole log in one pass (same code as the worker).

    On Spark (--engine local[N] or spark://...) the same aggregator runs per group of
    entities over the Parquet copy; no worker checkpoint is written there."""
    from feedstack.batch import jobs
    from feedstack.batch.engine import Engine
    from feedstack.core.spec import load_spec

    with cli_errors():
        proj = _project_dir(project)
        spec = load_spec(proj)
        eng = Engine.from_spec(spec, engine)
        if source not in ("log", "parquet"):
            raise InputError(f"--from must be log or parquet, got {source!r}")
        sink = open_sink(proj, sink_kind)
        offline_root = getattr(getattr(sink, "repo", None), "offline_root", None)
        path = checkpoint_path(proj) if checkpoint else None
        result = jobs.backfill(
            proj, eng, sink, source=source, offline_root=offline_root, checkpoint_path=path
        )
        result.update(sink=sink_kind)
        if as_json:
            emit_json(result)
        else:
            console.print_json(data=result)


def bench_freshness(
    rate: float = typer.Option(5_000, "--rate", min=1, help="Events per second to produce."),
    duration: float = typer.Option(20.0, "--duration", min=1, help="Seconds to produce."),
    backend: str = typer.Option("sqlite", "--backend", help="sqlite or redis."),
    users: int = typer.Option(100_000, "--users", min=1, help="Distinct users in the stream."),
    sink: str = typer.Option(
        "memory",
        "--sink",
        help="memory, count (rows dropped), feast or feast-redis (the store of record).",
    ),
    tick_only: list[str] = TickOnlyOption,
    project: Path | None = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Event-to-online-feature lag under a sustained event rate (producer and worker processes)."""
    from feedstack.bench.freshness import run_freshness_bench

    with cli_errors():
        if backend not in ("sqlite", "redis"):
            raise InputError(f"--backend must be sqlite or redis, got {backend!r}")
        from feedstack.bench.freshness import SINKS

        if sink not in SINKS:
            raise InputError(f"--sink must be one of {', '.join(SINKS)}, got {sink!r}")
        url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        _check_views(tick_only)
        result = run_freshness_bench(
            rate, duration, backend, url, users=users, sink=sink, tick_only_views=tick_only
        )
        record_measurement("bench-freshness", result, project, as_json)


def bench_worker(
    events: int = typer.Option(1_000_000, "--events", min=1_000, help="Events in the log."),
    users: int = typer.Option(100_000, "--users", min=1, help="Users in the replayed log."),
    big_users: int = typer.Option(
        1_000_000, "--big-users", min=0, help="Users in the memory run (0 skips it)."
    ),
    project: Path | None = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Worker throughput on one core, item-cache call time, window-state memory."""
    from feedstack.bench.worker_capacity import run_worker_bench

    with cli_errors():
        result = run_worker_bench(events=events, users=users, big_users=big_users)
        record_measurement("bench-worker", result, project, as_json)
