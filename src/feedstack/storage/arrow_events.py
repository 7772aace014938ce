"""Events as Arrow columns: one wide, nullable schema for every event type.

Used by the offline store (Parquet partitioned by event date) and by ``feedstack world generate
--format parquet``. Times are ``timestamp[us, UTC]`` (DuckDB-friendly, see design/dependencies.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from feedstack.core.events import Event

TS = pa.timestamp("us", tz="UTC")

EVENT_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("event_time", TS),
        ("type", pa.string()),
        ("schema_version", pa.int8()),
        ("user_id", pa.string()),
        ("article_id", pa.string()),
        ("request_id", pa.string()),
        ("item_ids", pa.list_(pa.string())),
        ("model_version", pa.string()),
        ("position", pa.int32()),
        ("dwell_ms", pa.int64()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("topic", pa.string()),
        ("region", pa.string()),
        ("publish_time", TS),
        ("signup_time", TS),
    ]
)
COLUMNS = [f.name for f in EVENT_SCHEMA]


def events_to_table(
    events: Iterable[Event], extra: dict[str, tuple[pa.DataType, Sequence[Any]]] | None = None
) -> pa.Table:
    """Events to a table of EVENT_SCHEMA (plus ``extra`` columns, e.g. the log offset)."""
    cols: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    for e in events:
        d = e.__dict__
        for c in COLUMNS:
            cols[c].append(d.get(c))
    arrays = [pa.array(cols[f.name], type=f.type) for f in EVENT_SCHEMA]
    fields = list(EVENT_SCHEMA)
    for name, (typ, values) in (extra or {}).items():
        arrays.append(pa.array(values, type=typ))
        fields.append(pa.field(name, typ))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def payloads_to_table(payloads: Sequence[bytes]) -> pa.Table:
    """Event JSON documents (as stored in the log) to a table of EVENT_SCHEMA, parsed in C++."""
    import io

    import pyarrow.json as pj

    if not payloads:
        return EVENT_SCHEMA.empty_table()
    opts = pj.ParseOptions(explicit_schema=EVENT_SCHEMA, unexpected_field_behavior="ignore")
    table = pj.read_json(
        io.BytesIO(b"\n".join(payloads)),
        read_options=pj.ReadOptions(block_size=1 << 24),
        parse_options=opts,
    )
    return table.select(COLUMNS)


def dicts_to_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Event-shaped dicts (times as datetime) to a table of EVENT_SCHEMA."""
    cols = {c: [r.get(c) for r in rows] for c in COLUMNS}
    return pa.Table.from_arrays(
        [pa.array(cols[f.name], type=f.type) for f in EVENT_SCHEMA], schema=EVENT_SCHEMA
    )


def row_to_event_dict(row: dict[str, Any]) -> dict[str, Any]:
    """A Parquet row back to an event mapping: drop the nulls of other event types."""
    return {k: v for k, v in row.items() if v is not None}


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write to a temporary name, fsync, rename: a reader never sees half a file."""
    import os

    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, coerce_timestamps="us", allow_truncated_timestamps=True)
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    tmp.replace(path)


def utc_date(t: datetime) -> str:
    """The UTC calendar date of an aware time, as YYYY-MM-DD (the offline partition key)."""
    return t.astimezone(UTC).date().isoformat()
