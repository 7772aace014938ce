"""Quarantine: stored events a batch job cannot use are set aside, not allowed to stop the job.

Ingest validates every event at the door, but a log may hold events accepted before a rule
existed (an article id with a NUL byte stopped ``feedstack candidates build`` for every user)
or written by another producer. A batch job reads the offline copy through ``quarantine``:
every row whose ids break today's rule (core/ids.py) is dropped from the table, counted, and
written to the dead-letter store with its event id, the field and the reason. The dead-letter
store dedupes its entries, so running the job again adds nothing.

The table check is columnar (pyarrow compute over each id column, list columns flattened), so a
clean log of millions of rows costs a few vectorized passes. Stream consumers (the feature
worker, the serving item cache) read raw records through ``parse_stream``: a record that is not
JSON, of no known type, or missing what the feature code reads is set aside the same way
instead of stopping the consumer (a structural check, ~1 us a record, not the full schema).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from feedstack.core.ids import CONTROL_CLASS, MAX_ID_CHARS, id_problem
from feedstack.storage.deadletter import DeadLetterStore, Rejection

ID_COLUMNS = ("event_id", "user_id", "article_id", "request_id")
LIST_ID_COLUMNS = ("item_ids",)
_CONTROL = f"[{CONTROL_CLASS}]"
MAX_REPORTED = 20


@dataclass
class QuarantineReport:
    quarantined: int = 0
    dead_letter: str = ""
    examples: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "quarantined": self.quarantined,
            "dead_letter": self.dead_letter,
            "examples": self.examples,
        }


def _bad_strings(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Per value: not a valid id (null counts as valid: optional fields)."""
    empty = pc.equal(pc.utf8_length(values), 0)
    long = pc.greater(pc.utf8_length(values), MAX_ID_CHARS)
    control = pc.match_substring_regex(values, _CONTROL)
    bad = pc.or_(pc.or_(empty, long), control)
    return np.asarray(pc.fill_null(bad, False).to_numpy(zero_copy_only=False), dtype=bool)


def bad_rows(table: pa.Table) -> dict[int, tuple[str, str]]:
    """Row -> (field, value) of the first bad id found in that row."""
    out: dict[int, tuple[str, str]] = {}
    for name in ID_COLUMNS:
        if name not in table.column_names:
            continue
        col = table[name]
        for row in np.flatnonzero(_bad_strings(col)).tolist():
            out.setdefault(row, (name, str(col[row].as_py())))
    for name in LIST_ID_COLUMNS:
        if name not in table.column_names:
            continue
        col = table[name].combine_chunks() if table.num_rows else None
        if col is None or len(col) == 0:
            continue
        flat = pc.list_flatten(col)
        parents = pc.list_parent_indices(col).to_numpy()
        for j in np.flatnonzero(_bad_strings(flat)).tolist():
            row = int(parents[j])
            out.setdefault(row, (name, str(flat[j].as_py())))
    return out


def quarantine(
    table: pa.Table, dead_letter: DeadLetterStore | None, stage: str
) -> tuple[pa.Table, QuarantineReport]:
    """``table`` without the rows a job cannot use; each dropped row is written to
    ``dead_letter`` (source ``stage``, the field and the reason, the row's ids as raw)."""
    report = QuarantineReport(dead_letter=dead_letter.location if dead_letter else "")
    bad = bad_rows(table)
    if not bad:
        return table, report
    rejections = []
    event_ids = table["event_id"] if "event_id" in table.column_names else None
    for row, (name, value) in sorted(bad.items()):
        reason = f"quarantined by {stage}: {id_problem(value) or 'invalid id'}"
        event_id = str(event_ids[row].as_py()) if event_ids is not None else ""
        raw = orjson.dumps({"event_id": event_id, name: value}).decode()
        rejections.append(Rejection(stage, 0, name, reason, raw))  # keyed by content
        if len(report.examples) < MAX_REPORTED:
            report.examples.append({"event_id": event_id, "field": name, "reason": reason})
    if dead_letter is not None:
        dead_letter.write(rejections)
    keep = np.ones(table.num_rows, dtype=bool)
    keep[list(bad)] = False
    report.quarantined = len(bad)
    return table.filter(pa.array(keep)), report


# ------------------------------------------------------------------ stream records
# What the feature code reads of each event type (features/aggregator.py): a record without
# these, or with the wrong kinds of values, would stop the consumer that meets it.
_STRINGS: dict[str, tuple[str, ...]] = {
    "article_published": ("article_id", "topic", "region", "publish_time"),
    "user_profile": ("user_id", "region"),
    "impression": ("user_id", "request_id"),
    "click": ("user_id", "article_id"),
    "dwell": ("user_id", "article_id"),
    "hide": ("user_id", "article_id"),
}


def _stream_problem(ev: object) -> tuple[str, str] | None:
    if not isinstance(ev, dict):
        return "<record>", "not a JSON object"
    kind = ev.get("type")
    needed = _STRINGS.get(kind) if isinstance(kind, str) else None
    if needed is None:
        return "type", f"unknown event type {kind!r}"
    for name in needed:
        if not isinstance(ev.get(name), str):
            return name, "missing or not a string"
    if kind == "impression":
        items = ev.get("item_ids")
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            return "item_ids", "missing or not a list of strings"
    for name in ("event_time", "publish_time"):
        if name in ev or name == "event_time":
            value = ev.get(name)
            try:
                if not isinstance(value, str) or datetime.fromisoformat(value).tzinfo is None:
                    raise ValueError
            except ValueError:
                return name, "missing or not a timezone-aware ISO 8601 time"
    return None


def parse_stream(
    records: Sequence[tuple[str, bytes]], stage: str
) -> tuple[list[dict[str, Any]], list[Rejection]]:
    """The records a stream consumer can use, parsed, in order; and a rejection (source
    ``stage``, line 0, raw = offset and payload) for each one it cannot. A log written only
    by ``feedstack ingest`` holds none of the latter; another producer's log might."""
    events: list[dict[str, Any]] = []
    rejected: list[Rejection] = []
    loads = orjson.loads
    for offset, payload in records:
        try:
            ev = loads(payload)
        except orjson.JSONDecodeError:
            problem: tuple[str, str] | None = ("<record>", "not valid JSON")
        else:
            problem = _stream_problem(ev)
        if problem is None:
            events.append(ev)
            continue
        raw = payload[:2000].decode("utf-8", "backslashreplace")
        rejected.append(
            Rejection(stage, 0, problem[0], f"quarantined by {stage}: {problem[1]}",
                      f"offset {offset}: {raw}")
        )  # fmt: skip
    return events, rejected
