"""``feedstack bench replicas``: serving replicas sharded by region behind HAProxy."""

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


def bench_replicas(
    project: Path | None = ProjectOption,
    replicas: int = typer.Option(2, "--replicas", min=1, max=8, help="Serving replicas."),
    workers: int = typer.Option(1, "--workers", min=1, help="Serving processes per replica."),
    rate: float | None = typer.Option(
        None, "--rate", help="Requests/s, open loop; without it: closed loop to saturation."
    ),
    duration: float = typer.Option(10.0, "--duration", min=1.0, help="Measured seconds."),
    concurrency: int = typer.Option(16, "--concurrency", min=1, help="Closed-loop workers."),
    event_share: float = typer.Option(
        0.1, "--event-share", min=0.0, max=0.99, help="Share of requests posting events."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Run --replicas copies of `feedstack serve` behind HAProxy, sharded by region.

    Writes the HAProxy config, starts and stops haproxy and the replicas, drives the balancer
    from a separate load generator (each feed request names its user's region) and records kind
    "bench-replicas" in PROJECT/measurements/: requests/s, latency, each replica's requests, the
    replicas' and the balancer's CPU, and the planner's predicted cores for that load against
    the cores measured (planner_check, the bar is 25 %).
    """
    from feedstack.bench.replicas import run_replicas_bench
    from feedstack.demo.replicas import planner_check

    with cli_errors():
        root = project_dir(project)
        if not (root / "feedstack.yaml").exists():
            raise InputError(f"no feedstack.yaml in {root}: pass --project")
        result = run_replicas_bench(
            root,
            replicas=replicas,
            workers=workers,
            rate=rate,
            duration_s=duration,
            concurrency=concurrency,
            event_share=event_share,
        )
        result["planner_check"] = planner_check(root, result)
        record_measurement("bench-replicas", result, root, as_json)
