"""``feedstack``: the command line. Each command lives in its own module and registers here."""

from __future__ import annotations

import typer

from feedstack import __version__
from feedstack.cli import (
    bench_cmd,
    candidates_cmd,
    demo_cmd,
    deploy_cmd,
    evaluate_cmd,
    experiment_cmd,
    features_cmd,
    ingest_cmd,
    init_cmd,
    lineage_cmd,
    monitor_cmd,
    plan_cmd,
    report_cmd,
    rollout_cmd,
    serve_cmd,
    serve_inproc_cmd,
    soak_cmd,
    train_cmd,
    worker_cmd,
    world_cmd,
)

app = typer.Typer(
    name="feedstack",
    help="feedstack: an end-to-end personalized feed system, measured by itself.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("init")(init_cmd.init)
app.command("ingest")(ingest_cmd.ingest)
app.command("demo")(demo_cmd.demo)
app.command("evaluate")(evaluate_cmd.evaluate)
app.command("train")(train_cmd.train)
app.command("serve")(serve_cmd.serve)
app.add_typer(world_cmd.app, name="world")
app.add_typer(bench_cmd.app, name="bench")
app.add_typer(features_cmd.app, name="features")
app.add_typer(worker_cmd.app, name="worker")
app.add_typer(candidates_cmd.app, name="candidates")
features_cmd.app.command("backfill")(worker_cmd.backfill)
bench_cmd.app.command("serve-inproc")(serve_inproc_cmd.serve_inproc)
bench_cmd.app.command("soak")(soak_cmd.bench_soak)
app.command("deploy")(deploy_cmd.deploy)
app.command("lineage")(lineage_cmd.lineage)
app.add_typer(rollout_cmd.app, name="rollout")
app.add_typer(experiment_cmd.app, name="experiment")
bench_cmd.app.command("rollout")(rollout_cmd.bench_rollout)
bench_cmd.app.command("abtest")(experiment_cmd.bench_abtest)
app.command("plan")(plan_cmd.plan)
app.command("report")(report_cmd.report)
app.add_typer(monitor_cmd.app, name="monitor")


@app.callback(invoke_without_command=True)
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit(0)


def main() -> None:
    import logging
    import sys

    from feedstack.core.redact import install_log_redaction

    # Warnings and errors of every command go to stderr, through the redaction filter (a backend
    # URL with a password inside a library's message never reaches a log).
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    install_log_redaction()
    app()
