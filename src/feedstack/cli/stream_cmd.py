"""``feedstack bench stream``: the stream half of the scale benchmark (registered by bench_cmd)."""

from __future__ import annotations

from pathlib import Path

import typer

from feedstack.cli.common import JsonOption, ProjectOption, cli_errors, record_measurement
from feedstack.core.errors import InputError


def bench_stream(
    rate: list[float] = typer.Option(
        [5_000.0, 20_000.0], "--rate", min=1, help="Events per second (repeatable)."
    ),
    workers: list[int] = typer.Option(
        [1, 2], "--workers", min=1, help="Feature workers in the consumer group (repeatable)."
    ),
    duration: float = typer.Option(20.0, "--duration", min=2, help="Seconds per run."),
    partitions: int = typer.Option(4, "--partitions", min=1, help="Partitions of the topic."),
    users: int = typer.Option(100_000, "--users", min=1, help="Distinct users in the stream."),
    bootstrap: str | None = typer.Option(
        None,
        "--bootstrap",
        help="host:port of a Kafka(-compatible) broker; default: a local tansu started here.",
    ),
    project: Path | None = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Event -> online feature lag with N workers in a Kafka consumer group (real ingest)."""
    from feedstack.bench.stream_scale import run_stream_bench

    with cli_errors():
        if max(workers) > partitions:
            raise InputError(
                f"--workers {max(workers)} > --partitions {partitions}: a member would idle"
            )
        result = run_stream_bench(
            rate, workers, duration, bootstrap=bootstrap, users=users, partitions=partitions
        )
        record_measurement("bench-stream", result, project, as_json)
