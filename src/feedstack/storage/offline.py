"""The offline store: the event log's copy as Parquet, partitioned by event date (UTC).

Layout under the store's folder::

    events/date=2026-01-01/part-00000001.parquet
    events/_manifest.json      {"offset": <last exported log offset>, "parts": <last part number>}

``sync(log)`` exports every log record after the manifest's offset. Parts are written to a temporary
name and renamed; the manifest is replaced last. A crash in between leaves parts numbered past the
manifest: the next sync deletes them and exports that range again, so the copy never holds an
event twice or half a file. Read it with DuckDB or ``pyarrow.dataset`` (hive partitioning).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from feedstack.storage.arrow_events import payloads_to_table, write_parquet_atomic
from feedstack.storage.eventlog import EventLog
from feedstack.storage.urls import parse_backend_url

OFFLINE_SCHEMES = ("file",)


class ParquetOfflineStore:
    def __init__(self, root: Path, rows_per_export: int = 250_000) -> None:
        self.root = root
        self.events_dir = root / "events"
        self.manifest_path = self.events_dir / "_manifest.json"
        self.rows_per_export = rows_per_export

    def _manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"offset": None, "parts": 0}
        data: dict[str, Any] = orjson.loads(self.manifest_path.read_bytes())
        return data

    def _save_manifest(self, offset: str | None, parts: int) -> None:
        tmp = self.manifest_path.with_name("_manifest.json.tmp")
        with tmp.open("wb") as f:
            f.write(orjson.dumps({"offset": offset, "parts": parts}))
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.manifest_path)

    def _remove_orphans(self, parts: int) -> None:
        if not self.events_dir.exists():
            return
        for p in self.events_dir.glob("date=*/part-*.parquet*"):
            number = int(p.name.split("-")[1].split(".")[0])
            if number > parts or p.name.endswith(".tmp"):
                p.unlink()

    def sync(self, log: EventLog) -> int:
        """Export what the log holds past the manifest; returns the number of events exported."""
        manifest = self._manifest()
        offset: str | None = manifest["offset"]
        parts: int = manifest["parts"]
        self._remove_orphans(parts)
        exported = 0
        while True:
            records = log.read_raw(offset, self.rows_per_export)
            if not records:
                return exported
            table = payloads_to_table([p for _, p in records])
            offsets = pa.array([o for o, _ in records], pa.string())
            table = table.append_column("log_offset", offsets)
            dates = pc.strftime(table["event_time"], format="%Y-%m-%d")
            for date in sorted(pc.unique(dates).to_pylist()):
                parts += 1
                path = self.events_dir / f"date={date}" / f"part-{parts:08d}.parquet"
                write_parquet_atomic(table.filter(pc.equal(dates, date)), path)
            offset = records[-1][0]
            self._save_manifest(offset, parts)
            exported += len(records)

    def read_table(self) -> pa.Table:
        """Every exported event as one table (with a ``date`` partition column)."""
        import pyarrow.dataset as ds

        if not self.events_dir.exists():
            return pa.table({})
        dataset = ds.dataset(
            self.events_dir, format="parquet", partitioning="hive", exclude_invalid_files=True
        )
        return dataset.to_table()


def open_offline_store(url: str, project: Path) -> ParquetOfflineStore:
    parsed = parse_backend_url(url, "offline_store", OFFLINE_SCHEMES, project)
    assert parsed.path is not None
    return ParquetOfflineStore(parsed.path)
