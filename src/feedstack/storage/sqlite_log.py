"""Embedded event log on SQLite (WAL, synchronous=FULL): one file under the project folder.

Why SQLite: a transaction is atomic and, with synchronous=FULL, fsynced before COMMIT returns, so
"durable before acknowledged" and "nothing half-written after kill -9" come from the engine, and the
UNIQUE index on event_id makes re-ingestion a no-op. The offset is the row's sequence number.

Several processes (the serving workers, ``feedstack ingest``) may append at once: each append is
one ``BEGIN IMMEDIATE`` transaction, which takes the database's write lock first, so writers
queue (``busy_timeout``) instead of failing, a sequence number is assigned under the lock (a
reader never sees a smaller one appear later), and an event id two processes post at once is
inserted by exactly one of them (tests/contract/test_event_log_writers.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from feedstack.core.errors import BackendUnavailable
from feedstack.core.events import EVENT_ADAPTER, Event
from feedstack.storage.eventlog import AppendResult, LogRecord

BUSY_TIMEOUT_S = 10.0  # how long an append waits for another writer's transaction
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    payload BLOB NOT NULL
);
"""


class SqliteEventLog:
    def __init__(self, path: Path, url: str | None = None) -> None:
        self.path = path
        self.url = url or f"sqlite://{path}"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
            )
            # The busy timeout first: switching to WAL and creating the table take locks that
            # another process opening the log at the same moment may hold.
            self._db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise BackendUnavailable(f"event log {self.url}: {exc}") from exc

    def append(
        self, events: Sequence[Event], payloads: Sequence[bytes] | None = None
    ) -> AppendResult:
        if not events:
            return AppendResult(0, 0)
        if payloads is None:
            payloads = [EVENT_ADAPTER.dump_json(e) for e in events]
        rows = [(e.event_id, p) for e, p in zip(events, payloads, strict=True)]
        try:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.executemany(
                    "INSERT OR IGNORE INTO events(event_id, payload) VALUES (?, ?)",
                    rows,
                )
                accepted = cur.rowcount
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"event log {self.url}: append failed: {exc}") from exc
        return AppendResult(accepted=accepted, duplicates=len(rows) - accepted)

    def read(self, after: str | None = None, limit: int = 10_000) -> list[LogRecord]:
        parse = EVENT_ADAPTER.validate_json
        return [LogRecord(offset, parse(p)) for offset, p in self.read_raw(after, limit)]

    def read_raw(self, after: str | None = None, limit: int = 10_000) -> list[tuple[str, bytes]]:
        start = int(after) if after is not None else 0
        cur = self._db.execute(
            "SELECT seq, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (start, limit)
        )
        return [(str(seq), bytes(payload)) for seq, payload in cur]

    def count(self) -> int:
        (n,) = self._db.execute("SELECT count(*) FROM events").fetchone()
        return int(n)

    def close(self) -> None:
        self._db.close()
