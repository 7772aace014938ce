"""Where feature rows go: the online store (latest value per entity) and the offline store
(every snapshot row, for point-in-time joins).

Port: ``write_online(rows)`` upserts each entity's latest row (a row never replaces a newer one);
``write_offline(rows)`` appends snapshot rows durably. Both are idempotent for the same rows, so
a worker that crashes and re-sends after its last checkpoint never corrupts a value.
Implementations: ``MemorySink`` here (tests, local runs), ``FolderSink`` (offline rows as Parquet
in a folder per view, online rows in memory), the Feast-backed store in feast_store.py.

``write_rows_folder`` is the one writer of offline rows: the Feast store's ``write_offline``, the
``FolderSink`` and the Spark backfill's partitions (batch/backfill.py) all write through it, so a
folder written by any of them reads the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from feedstack.features.feast_repo import TIMESTAMP_FIELD, write_parquet_hidden_tmp
from feedstack.features.rows import FeatureRows

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class FeatureSink(Protocol):
    def write_online(self, rows: Sequence[FeatureRows]) -> None: ...

    def write_offline(self, rows: Sequence[FeatureRows]) -> None: ...


class MemorySink:
    """Online: view -> key -> row dict (newest as-of wins). Offline: every row, in order."""

    def __init__(self) -> None:
        self.online: dict[str, dict[str, dict[str, Any]]] = {}
        self.offline: list[tuple[str, dict[str, Any]]] = []

    def write_online(self, rows: Sequence[FeatureRows]) -> None:
        for fr in rows:
            table = self.online.setdefault(fr.view, {})
            for rec in fr.records():
                old = table.get(rec["key"])
                if old is None or old["as_of_s"] <= rec["as_of_s"]:
                    table[rec["key"]] = rec

    def write_offline(self, rows: Sequence[FeatureRows]) -> None:
        for fr in rows:
            self.offline.extend((fr.view, rec) for rec in fr.records())


def write_rows_folder(root: Path, rows: Sequence[FeatureRows]) -> list[Path]:
    """Append snapshot rows as Parquet under ``root/<view>/``: one new file per view per call,
    named by its earliest as-of time (files sort by time) and a content hash (re-sending the
    same rows rewrites nothing), written to a hidden temporary name and renamed."""
    tables: dict[str, list[pa.Table]] = {}
    for fr in rows:
        if len(fr):
            tables.setdefault(fr.view, []).append(fr.to_arrow())
    written = []
    for view, parts in tables.items():
        table = pa.concat_tables(parts).combine_chunks()
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        digest = hashlib.blake2b(sink.getvalue().to_pybytes(), digest_size=10).hexdigest()
        first_us = pc.min(table[TIMESTAMP_FIELD].cast(pa.int64())).as_py()
        first = _EPOCH + timedelta(microseconds=first_us)
        path = root / view / f"{first:%Y%m%dT%H%M%S}-{digest}.parquet"
        if not path.exists():
            write_parquet_hidden_tmp(table, path)
            written.append(path)
    return written


class FolderSink(MemorySink):
    """Offline rows as Parquet under ``root/<view>/`` (``write_rows_folder``); online rows in
    memory, newest as-of wins (MemorySink)."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def write_offline(self, rows: Sequence[FeatureRows]) -> None:
        write_rows_folder(self.root, rows)
