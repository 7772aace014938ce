"""``feedstack ingest PATH...``: validate and store events from files or datasets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from feedstack.cli.common import (
    JsonOption,
    ProjectOption,
    cli_errors,
    console,
    emit_json,
    project_dir,
)
from feedstack.core.errors import InputError
from feedstack.core.spec import load_spec
from feedstack.ingest.pipeline import BatchResult, Ingestor
from feedstack.ingest.readers import check_inputs, read_events
from feedstack.ingest.records import RawRecord


def _parse_options(options: list[str]) -> dict[str, str]:
    out = {}
    for o in options:
        key, sep, value = o.partition("=")
        if not sep or not key:
            raise InputError(f"--option {o!r}: expected KEY=VALUE")
        out[key] = value
    return out


def _records(
    paths: list[Path], fmt: str | None, adapter: str, options: dict[str, str]
) -> Iterator[RawRecord]:
    if adapter == "events":
        for path, f in check_inputs(paths, fmt):
            yield from read_events(path, f)
    else:
        from feedstack.ingest.adapters import open_adapter

        yield from open_adapter(adapter, paths, options)


def ingest(
    paths: list[Path] = typer.Argument(
        ..., help="Event files (JSON Lines, CSV or Parquet) or dataset files."
    ),
    fmt: str | None = typer.Option(
        None, "--format", "-f", help="jsonl|csv|parquet (default: from the file name)."
    ),
    adapter: str = typer.Option(
        "events",
        "--adapter",
        "-a",
        help="Input kind: events (feedstack's schema), movielens, mind, lightgcn, mapped.",
    ),
    option: list[str] = typer.Option(
        [], "--option", "-o", help="Adapter option KEY=VALUE (repeatable), e.g. map.user_id=uid."
    ),
    project: Path | None = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Ingest events: validate, dead-letter the bad ones with a reason, append durably, dedupe.

    Exit 0 when the run completed (even with rejections), 2 when an input cannot be read at all
    (nothing is ingested then), 1 when a backend fails (what was acknowledged stays stored).
    """
    with cli_errors():
        root = project_dir(project)
        spec = load_spec(root)
        opts = _parse_options(option)
        records = _records(paths, fmt, adapter, opts)
        # Pull the first record now: input errors (unreadable, binary) surface before any write.
        first = next(records, None)
        ingestor = Ingestor.from_spec(spec, root)
        try:
            with Progress(
                TextColumn("[bold]ingest"),
                BarColumn(),
                TextColumn("{task.fields[n]:,} records"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            ) as progress:
                task = progress.add_task("ingest", total=None, n=0)
                seen = 0

                def on_ack(result: BatchResult) -> None:
                    nonlocal seen
                    seen += result.accepted + result.duplicates + result.rejected
                    progress.update(task, n=seen)

                stream = records if first is None else _chain(first, records)
                report = ingestor.ingest(stream, on_ack=on_ack)
        finally:
            ingestor.close()
        if as_json:
            emit_json(report.to_dict())
        else:
            rate = report.to_dict()["events_per_s"] or 0
            console.print(
                f"accepted {report.accepted:,}  duplicates {report.duplicates:,}  "
                f"rejected {report.rejected:,}  ({rate:,.0f} records/s)"
            )
            if report.rejected:
                console.print(f"dead letters: {report.dead_letter}")
                for e in report.errors[:5]:
                    console.print(f"  {e['source']}:{e['line']}: {e['field']}: {e['reason']}")


def _chain(first: RawRecord, rest: Iterator[RawRecord]) -> Iterator[RawRecord]:
    yield first
    yield from rest
