"""``feedstack world generate``: write a simulated news world's events for ``feedstack ingest``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from feedstack.cli.common import JsonOption, cli_errors, console, emit_json
from feedstack.core.clock import SystemClock
from feedstack.core.errors import InputError
from feedstack.world import DEFAULT_START, WorldConfig, write_world

app = typer.Typer(help="The simulated news world.", no_args_is_help=True)

ARTICLES_PER_DAY = 500  # default article count per simulated day

# WorldConfig field -> the option that sets it, so validation errors name what the user typed.
_OPTIONS = {"users": "--users", "articles": "--articles", "days": "--days", "seed": "--seed"}


@app.command("generate")
def generate(
    out: Path = typer.Option(..., "--out", help="Folder for events.<format> and world.json."),
    users: int = typer.Option(1000, "--users", help="Number of users."),
    articles: int | None = typer.Option(
        None,
        "--articles",
        help=f"Articles over the whole window (default: {ARTICLES_PER_DAY} per day).",
    ),
    days: float = typer.Option(
        1.0, "--days", help="Length of the window in days (may be fractional)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed gives a byte-identical file."),
    start: str = typer.Option(
        DEFAULT_START.isoformat().replace("+00:00", "Z"),
        "--start",
        help="Start of the window, ISO 8601 (UTC if no offset); the window must end in the past.",
    ),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl or parquet (EVENT_SCHEMA)."),
    as_json: bool = JsonOption,
) -> None:
    """Generate a world: users, articles and a log of feed impressions, clicks, dwell and hides.

    About 10 events per user-day with the defaults: 100k users x 1 day is about 1M events.
    """
    with cli_errors():
        config = _config(users, articles, days, seed, start)
        with Progress(
            TextColumn("world"),
            BarColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=as_json or not console.is_terminal,
            transient=True,
        ) as bar:
            task = bar.add_task("generate", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            summary = write_world(config, out, fmt, now=SystemClock().now(), progress=progress)
    if as_json:
        emit_json(summary)
    else:
        _print_summary(summary)


def _config(users: int, articles: int | None, days: float, seed: int, start: str) -> WorldConfig:
    try:
        begin = datetime.fromisoformat(start)
    except ValueError:
        raise InputError(f"--start must be an ISO 8601 time, got {start!r}") from None
    if begin.tzinfo is None:
        begin = begin.replace(tzinfo=UTC)
    if articles is None:
        articles = max(1, round(ARTICLES_PER_DAY * days))
    try:
        return WorldConfig(users=users, articles=articles, days=days, seed=seed, start=begin)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        given: Any = err.get("input")
        option = _OPTIONS.get(field, field or "world config")
        raise InputError(f"{option}: {err['msg']}, got {given!r}") from None


def _print_summary(s: dict[str, Any]) -> None:
    counts = ", ".join(f"{n:,} {kind}" for kind, n in s["counts"].items())
    console.print(
        f"wrote {s['events']:,} events ({counts}) in {s['seconds']:.1f} s to {s['path']}\n"
        f"CTR {s['ctr']:.2%}, {s['clicks_per_impression']:.2f} clicks per impression, "
        f"{s['events_per_user_day']:.1f} events per user-day; config in {s['world']}",
        highlight=False,
    )
