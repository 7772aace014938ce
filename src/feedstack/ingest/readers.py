"""Readers for event files: JSON Lines, CSV and Parquet, each yielding RawRecords.

Every path is checked before a single record is read (``check_inputs``): a missing, unreadable or
binary file is an InputError (exit 2) and nothing is ingested. Inside a readable file, a bad line
is a per-record rejection, never an error of the run.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from feedstack.core.errors import InputError
from feedstack.ingest.records import RawRecord

FORMATS = ("jsonl", "csv", "parquet")
_SNIFF_BYTES = 8192
# List-valued fields in CSV cells: a JSON array, or ids separated by '|'.
_CSV_LIST_FIELDS = ("item_ids",)
_CSV_INT_FIELDS = ("position", "dwell_ms", "schema_version")


def detect_format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise InputError(f"--format {fmt!r}: unknown; valid: {', '.join(FORMATS)}")
        return fmt
    name = path.name.lower()
    for suffix, f in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "jsonl")):
        if name.endswith(suffix):
            return f
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(".parquet") or name.endswith(".pq"):
        return "parquet"
    raise InputError(
        f"{path}: cannot tell the format from the name; pass --format jsonl|csv|parquet"
    )


def check_inputs(paths: list[Path], fmt: str | None) -> list[tuple[Path, str]]:
    """Resolve every input's format and prove it readable, before anything is ingested."""
    if not paths:
        raise InputError("no input paths given")
    out = []
    for path in paths:
        f = detect_format(path, fmt)
        if not path.exists():
            raise InputError(f"{path}: no such file")
        if path.is_dir():
            raise InputError(f"{path}: is a folder, expected a file")
        try:
            with path.open("rb") as fh:
                head = fh.read(_SNIFF_BYTES)
        except OSError as exc:
            raise InputError(f"{path}: cannot be read: {exc.strerror}") from None
        if f == "parquet":
            _check_parquet(path)
        elif b"\x00" in head:
            raise InputError(f"{path}: binary content (NUL bytes), not {f} text")
        out.append((path, f))
    return out


def _check_parquet(path: Path) -> None:
    import pyarrow.parquet as pq

    try:
        pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise InputError(f"{path}: not a readable Parquet file: {exc}") from None


def read_jsonl(path: Path) -> Iterator[RawRecord]:
    source = str(path)
    with path.open("rb") as fh:
        for n, line in enumerate(fh, start=1):
            stripped = line.strip()
            if not stripped:
                continue
            yield RawRecord(source, n, stripped)


def read_csv(path: Path) -> Iterator[RawRecord]:
    source = str(path)
    with path.open("r", encoding="utf-8", errors="surrogateescape", newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            return
        for row in reader:
            n = reader.line_num
            raw = _csv_line(row)
            if len(row) != len(header):
                yield RawRecord(
                    source,
                    n,
                    None,
                    raw,
                    ("<record>", f"{len(row)} cells, header has {len(header)}"),
                )
                continue
            yield RawRecord(source, n, _csv_row(header, row), raw)


def _csv_line(row: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerow(row)
    return (
        buf.getvalue()
        .rstrip("\r\n")
        .encode("utf-8", "surrogateescape")
        .decode("utf-8", "backslashreplace")
    )


def _csv_row(header: list[str], row: list[str]) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for key, cell in zip(header, row, strict=True):
        if cell == "":
            continue  # an empty cell is an absent field (CSV has no null)
        if key in _CSV_LIST_FIELDS:
            d[key] = orjson.loads(cell) if cell.startswith("[") else cell.split("|")
        elif key in _CSV_INT_FIELDS and cell.lstrip("-").isdigit():
            d[key] = int(cell)
        else:
            d[key] = cell
    return d


def read_parquet(path: Path, batch_rows: int = 65_536) -> Iterator[RawRecord]:
    import pyarrow.parquet as pq

    source = str(path)
    n = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
        for row in batch.to_pylist():
            n += 1
            payload = {k: v for k, v in row.items() if v is not None}
            yield RawRecord(source, n, payload)


def read_events(path: Path, fmt: str) -> Iterator[RawRecord]:
    if fmt == "jsonl":
        return read_jsonl(path)
    if fmt == "csv":
        return read_csv(path)
    return read_parquet(path)
