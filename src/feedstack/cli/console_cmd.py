"""``feedstack bench console``: the console in headless Chromium under live traffic, and its
screenshot (docs/console.png, shown in the README). ``bench all`` runs it after the others."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import typer

from feedstack.cli.common import JsonOption, cli_errors, console, emit_json


def run_console_bench(out: Path, work: Path | None = None) -> dict[str, Any]:
    """Serve a tiny trained project under simulated users, load /console in headless Chromium,
    check every chart has data points, and write the screenshot to ``out``."""
    from feedstack.bench.console_shot import (
        chromium_path,
        console_server,
        console_status,
        screenshot,
    )
    from feedstack.core.errors import NotSupported

    if chromium_path() is None:
        raise NotSupported("chromium is not installed (Debian: apt-get install chromium)")
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="feedstack-console-", dir=work) as tmp,
        console_server(Path(tmp)) as live,
    ):
        status = console_status(live.console_url)
        screenshot(live.console_url, out)
    empty = sorted(k for k, v in status["charts"].items() if v < 1)
    return {
        "screenshot": str(out),
        "charts": status["charts"],
        "empty_charts": empty,
        "page_errors": status["errors"] + status["log_errors"],
    }


def screenshot_for_bench(out: Path, work: Path | None) -> None:
    """The step of ``bench all``: without Chromium it says how to install it and goes on."""
    from feedstack.bench.console_shot import chromium_path

    if chromium_path() is None:
        console.print("[yellow]console screenshot skipped:[/yellow] apt-get install chromium")
        return
    console.print("[bold]console screenshot[/bold] (headless Chromium, live traffic)")
    result = run_console_bench(out, work)
    console.print(f"wrote {result['screenshot']}; charts {result['charts']}")


def bench_console(
    out: Path = typer.Option(Path("docs/console.png"), "--out", help="The screenshot (PNG)."),
    work: Path | None = typer.Option(None, "--work", help="Folder for the temporary project."),
    as_json: bool = JsonOption,
) -> None:
    """Screenshot the live console (docs/console.png) and check its charts in Chromium."""
    with cli_errors():
        result = run_console_bench(out, work)
    if as_json:
        emit_json(result)
    else:
        console.print_json(data=result)
