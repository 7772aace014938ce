"""``feedstack monitor up`` / ``down``: a local Prometheus scraping the project's servers.

feedstack monitor up   [-p P] [--port 9090] [--target [JOB=]HOST:PORT ...] [--worker-metrics PORT]
                       [--scrape-interval 15] [--time-scale 1]
feedstack monitor down [-p P]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from feedstack.cli.common import (
    JsonOption,
    ProjectOption,
    cli_errors,
    console,
    emit_json,
    project_dir,
)


def _show(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(result)
    else:
        console.print_json(data=result)


def up(
    project: Path | None = ProjectOption,
    port: int = typer.Option(9090, "--port", min=1, max=65535, help="Prometheus' HTTP port."),
    target: list[str] = typer.Option(
        [], "--target", help="Another serving replica to scrape, [JOB=]HOST:PORT (repeatable)."
    ),
    worker_metrics: int | None = typer.Option(
        None, "--worker-metrics", help="The feature worker's --metrics-port, to scrape it too."
    ),
    scrape_interval: float = typer.Option(
        15.0, "--scrape-interval", min=0.1, help="Seconds between scrapes and rule evaluations."
    ),
    time_scale: float = typer.Option(
        1.0,
        "--time-scale",
        min=1e-4,
        max=1.0,
        help="Multiply every rule range and 'for' (1/60: a minute becomes a second, for demos).",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Start Prometheus (Debian package prometheus) on 127.0.0.1 with the generated rules.

    It scrapes the spec's serving port (api.http_port) on loopback, every --target and the
    feature worker's metrics port; its storage is a temporary folder under
    PROJECT/monitor/prometheus/, removed by `feedstack monitor down`. Alerts:
    http://127.0.0.1:PORT/alerts or /api/v1/alerts.
    """
    from feedstack.core.spec import load_spec
    from feedstack.monitor.prometheus import PrometheusServer, project_targets, scaled_rules
    from feedstack.monitor.prometheus import up as start
    from feedstack.monitor.rules import rules_document

    with cli_errors():
        root = project_dir(project)
        spec = load_spec(root)
        targets = project_targets(spec.api.http_port, target, worker_metrics)
        rules = rules_document(spec)
        if time_scale != 1.0:
            rules = scaled_rules(rules, time_scale, min_range_s=4 * scrape_interval)
        server = PrometheusServer(
            root / "monitor" / "prometheus",
            targets,
            rules,
            port=port,
            scrape_interval_s=scrape_interval,
            evaluation_interval_s=scrape_interval,
        )
        result = start(server)
    _show(result, as_json)


def down(project: Path | None = ProjectOption, as_json: bool = JsonOption) -> None:
    """Stop the Prometheus `feedstack monitor up` started and remove its storage."""
    from feedstack.monitor.prometheus import down as stop

    with cli_errors():
        result = stop(project_dir(project) / "monitor" / "prometheus")
    _show(result, as_json)
