"""``feedstack bench soak``: the multi-process server for minutes under feeds and events; feed
latency per minute and the server's memory growth (bench/soak.py). Recorded in measurements/."""

from __future__ import annotations

from pathlib import Path

import typer

from feedstack.cli.common import (
    JsonOption,
    ProjectOption,
    cli_errors,
    project_dir,
    record_measurement,
)
from feedstack.core.errors import InputError


def bench_soak(
    project: Path | None = ProjectOption,
    rate: float = typer.Option(200.0, "--rate", min=1.0, help="Requests/s, open loop."),
    duration: float = typer.Option(600.0, "--duration", min=10.0, help="Seconds of load."),
    event_share: float = typer.Option(
        0.1, "--event-share", min=0.0, max=0.99, help="Share of requests posting events."
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Serving processes (default: the cores available)."
    ),
    protocol: str = typer.Option("http", "--protocol", help="http or grpc."),
    settle: float = typer.Option(
        120.0, "--settle", min=0.0, help="Seconds before memory growth is measured."
    ),
    service: str = typer.Option(
        "pipeline", "--service", help="pipeline (the project) or synthetic (transport only)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Soak `feedstack serve`: p99 per minute and RSS growth per minute after --settle.

    Targets: p99 per minute <= 15 ms, growth <= 1 MB/min (10 minutes at 200 req/s, 10 % events).
    Records kind "bench-soak" in PROJECT/measurements/.
    """
    from feedstack.bench.soak import run_soak_bench

    with cli_errors():
        root = project_dir(project)
        if service not in ("pipeline", "synthetic"):
            raise InputError(f"--service must be pipeline or synthetic, got {service!r}")
        if service == "pipeline" and not (root / "feedstack.yaml").exists():
            raise InputError(f"no feedstack.yaml in {root}: pass --project")
        if protocol not in ("http", "grpc"):
            raise InputError(f"--protocol must be http or grpc, got {protocol!r}")
        result = run_soak_bench(
            root,
            rate=rate,
            duration_s=duration,
            event_share=event_share,
            workers=workers,
            protocol=protocol,
            settle_s=settle,
            service=service,
        )
        record_measurement("bench-soak", result, root, as_json)
