"""Rows of a CSV or Parquet file as dicts, for the ``mapped`` adapter.

``columns(path)`` reads only the header (CSV) or the schema (Parquet), so that a mapping that
names a missing column fails before anything is ingested. ``rows(path)`` yields
``(row_number, row or (field, reason), raw text)``; a row that cannot be read never stops the file.
pyarrow is imported here, not at the package import, because only Parquet input needs it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from feedstack.core.errors import InputError

Row = dict[str, Any]
RowOrError = tuple[int, Row | tuple[str, str], str]


def is_parquet(path: Path, fmt: str | None) -> bool:
    if fmt is not None:
        return fmt == "parquet"
    return path.suffix.lower() in (".parquet", ".pq")


def columns(path: Path, *, parquet: bool, delimiter: str) -> list[str]:
    if parquet:
        import pyarrow.parquet as pq

        try:
            return list(pq.ParquetFile(path).schema_arrow.names)
        except Exception as exc:  # pyarrow raises several types for "not Parquet"
            raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
    with _open_text(path) as f:
        try:
            header = next(csv.reader(f, delimiter=delimiter), None)
        except csv.Error as exc:
            raise InputError(f"{path}: cannot read the CSV header ({exc})") from None
    if not header:
        raise InputError(f"{path}: empty file, expected a CSV header line")
    return [c.strip() for c in header]


def rows(path: Path, *, parquet: bool, delimiter: str, wanted: list[str]) -> Iterator[RowOrError]:
    if parquet:
        yield from _parquet_rows(path, wanted)
    else:
        yield from _csv_rows(path, delimiter)


def _open_text(path: Path) -> io.TextIOWrapper:
    # surrogateescape: a bad byte spoils its row only, found by _undecodable() below.
    return path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="")


def _undecodable(values: list[str]) -> bool:
    try:
        "".join(values).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _csv_text(values: list[str], delimiter: str) -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="").writerow(values)
    return out.getvalue().encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _csv_rows(path: Path, delimiter: str) -> Iterator[RowOrError]:
    with _open_text(path) as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = [c.strip() for c in next(reader, [])]
        done = reader.line_num
        while True:
            start = done + 1  # a quoted field may span lines; report the row's first line
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                if reader.line_num == done:
                    return  # the reader cannot move on: stop rather than loop
                done = reader.line_num
                yield start, ("line", f"unreadable CSV: {exc}"), f"<CSV line {start}>"
                continue
            done = reader.line_num
            if not values or not "".join(values).strip():
                continue
            raw = _csv_text(values, delimiter)
            if _undecodable(values):
                yield start, ("line", "not valid UTF-8"), raw
            elif len(values) != len(header):
                reason = f"expected {len(header)} fields, got {len(values)}"
                yield start, ("line", reason), raw
            else:
                yield start, dict(zip(header, values, strict=True)), raw


def _raw(row: Row) -> str:
    try:
        return orjson.dumps(row, default=str).decode()
    except TypeError:  # e.g. an unsigned 64-bit value beyond orjson's range
        return repr(row)


def _parquet_rows(path: Path, wanted: list[str]) -> Iterator[RowOrError]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    number = 0
    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=8192, columns=wanted):
            for row in batch.to_pylist():
                number += 1
                yield number, row, _raw(row)
    except (pa.ArrowException, OSError) as exc:
        # A corrupt page after good ones: the rows read so far stand, the rest is one error.
        yield number + 1, ("file", f"unreadable Parquet from here on: {exc}"), f"<{path}>"
