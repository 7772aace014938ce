"""``feedstack demo``: run every stage that exists, end to end, on embedded defaults."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import typer

from feedstack.cli.common import JsonOption, cli_errors, console, emit_json


def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", help="Folder for the project and results."),
    users: int = typer.Option(5_000, "--users", min=10, help="Simulated users."),
    articles: int = typer.Option(1_500, "--articles", min=10, help="Simulated articles."),
    days: int = typer.Option(3, "--days", min=1, max=60, help="Simulated days."),
    seed: int = typer.Option(7, "--seed", help="World seed."),
    online_seconds: float = typer.Option(
        20.0,
        "--online-seconds",
        min=1.0,
        help="Length of each online measurement (live traffic, load benchmark, freshness).",
    ),
    backends: str = typer.Option(
        "embedded",
        "--backends",
        help="embedded (local files, the default) or scale (the event stream on a Kafka-protocol "
        "broker the demo starts and stops, Redis for the online path, the offline stages on "
        "Spark local[2]).",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Run the main job: world -> ingest -> features -> train -> serve live traffic -> canary ->
    monitors -> plan and report. Exits 0 only if every stage ran."""
    # Imported here: the stages pull in pyarrow, duckdb and the models (~1 s), which every
    # other command would otherwise pay at startup (`feedstack plan` must answer in < 1 s).
    from feedstack.demo.backends import Backends
    from feedstack.demo.stages import STAGES, DemoContext, run_stage

    with cli_errors():
        engines = Backends.for_mode(backends)
    ctx = DemoContext(
        out=out,
        users=users,
        articles=articles,
        days=days,
        seed=seed,
        online_seconds=online_seconds,
        backends=engines,
    )
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    began = time.perf_counter()
    failed = None
    with cli_errors():
        engines.start(out)
    try:
        for i, (name, title, fn) in enumerate(STAGES, start=1):
            console.print(f"[bold cyan][{i}/{len(STAGES)}][/bold cyan] {title} ...")
            try:
                timings[name] = round(run_stage(ctx, name, fn), 3)
            except Exception as exc:  # a failed stage ends the demo with its reason
                failed = {"stage": name, "error": f"{type(exc).__name__}: {exc}"}
                console.print(f"[red]stage {name} failed:[/red] {failed['error']}")
                break
            console.print(f"      done in {timings[name]:.1f} s")
    finally:
        engines.stop()
    doc = {
        "ok": failed is None,
        "engines": engines.engines(),
        "failed": failed,
        "seconds": round(time.perf_counter() - began, 3),
        "stage_seconds": timings,
        "results": ctx.results,
        "project": str(ctx.project),
        "report": str(out / "report" / "report.html") if "report" in ctx.results else None,
    }
    (out / "demo.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    if as_json:
        emit_json(doc)
    else:
        _print_answers(ctx.results.get("report", {}))
        console.print(f"results: {out / 'demo.json'}   project: {ctx.project}")
        if doc["report"]:
            console.print(f"[bold]report:[/bold] {doc['report']} (and report.md, report.json)")
    if failed is not None:
        raise typer.Exit(1)


def _print_answers(report: dict[str, Any]) -> None:
    """The design review's questions, answered from the run's measurements."""
    answers = report.get("answers") or {}
    if not answers:
        return
    from rich.table import Table

    table = Table(title="Does the reference case meet its targets?")
    for col in ("question", "target", "value", "label", "verdict"):
        table.add_column(col)
    for name, a in answers.items():
        if not isinstance(a, dict):
            continue
        value = a.get("value") or {}
        table.add_row(
            name,
            str(a.get("target", "")),
            f"{value.get('value', '')} {value.get('unit', '')}".strip(),
            str(value.get("label", "")),
            str(a.get("verdict", "")),
        )
    console.print(table)
    console.print(f"bottleneck: {answers.get('bottleneck') or report.get('bottleneck')}")
