"""``feedstack demo``: run every stage that exists, end to end, on embedded defaults."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import typer

from feedstack.cli.common import JsonOption, console, emit_json


def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", help="Folder for the project and results."),
    users: int = typer.Option(5_000, "--users", min=10, help="Simulated users."),
    articles: int = typer.Option(1_500, "--articles", min=10, help="Simulated articles."),
    days: int = typer.Option(3, "--days", min=1, max=60, help="Simulated days."),
    seed: int = typer.Option(7, "--seed", help="World seed."),
    as_json: bool = JsonOption,
) -> None:
    """Run the main job: world -> ingest -> ... -> summary. Exits 0 only if every stage ran."""
    # Imported here: the stages pull in pyarrow, duckdb and the models (~1 s), which every
    # other command would otherwise pay at startup (`feedstack plan` must answer in < 1 s).
    from feedstack.demo.stages import STAGES, DemoContext, run_stage

    ctx = DemoContext(out=out, users=users, articles=articles, days=days, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    began = time.perf_counter()
    failed = None
    for i, (name, title, fn) in enumerate(STAGES, start=1):
        console.print(f"[bold cyan][{i}/{len(STAGES)}][/bold cyan] {title} ...")
        try:
            timings[name] = round(run_stage(ctx, name, fn), 3)
        except Exception as exc:  # a failed stage ends the demo with its reason, not a traceback
            failed = {"stage": name, "error": f"{type(exc).__name__}: {exc}"}
            console.print(f"[red]stage {name} failed:[/red] {failed['error']}")
            break
        console.print(f"      done in {timings[name]:.1f} s")
    doc = {
        "ok": failed is None,
        "failed": failed,
        "seconds": round(time.perf_counter() - began, 3),
        "stage_seconds": timings,
        "results": ctx.results,
        "project": str(ctx.project),
    }
    (out / "demo.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    if as_json:
        emit_json(doc)
    else:
        summary = ctx.results.get("summary", {})
        console.print_json(data=summary)
        console.print(f"results: {out / 'demo.json'}   project: {ctx.project}")
    if failed is not None:
        raise typer.Exit(1)
