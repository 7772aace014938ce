"""Embedded event log on SQLite (WAL, synchronous=FULL): one file under the project folder.

Why SQLite: a transaction is atomic and, with synchronous=FULL, fsynced before COMMIT returns, so
"durable before acknowledged" and "nothing half-written after kill -9" come from the engine, and the
UNIQUE index on event_id makes re-ingestion a no-op. The offset is the row's sequence number.

Several processes (the serving workers, ``feedstack ingest``) may append at once: each append is
one ``BEGIN IMMEDIATE`` transaction, which takes the database's write lock first, so a sequence
number is assigned under the lock (a reader never sees a smaller one appear later) and an event
id two processes post at once is inserted by exactly one of them
(tests/contract/test_event_log_writers.py). Writers also queue on an ``flock`` of a file beside
the database before they begin: the kernel hands it over the moment it is released, whereas
SQLite's own busy handler retries on a sleeping backoff (1, 2, 5, ... up to 100 ms between
tries), under which two busy processes took turns in bursts and one waited seconds. The busy
timeout stays as the guard against writers that do not take the file lock.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from feedstack.core.errors import BackendUnavailable
from feedstack.core.events import EVENT_ADAPTER, Event
from feedstack.storage.eventlog import AppendResult, Batch, LogRecord

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
            lock_path = path.with_name(path.name + ".writer-lock")
            self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except (sqlite3.Error, OSError) as exc:
            raise BackendUnavailable(f"event log {self.url}: {exc}") from exc
        self._thread_lock = threading.Lock()  # threads of this process share one connection

    def append(
        self, events: Sequence[Event], payloads: Sequence[bytes] | None = None
    ) -> AppendResult:
        return self.append_many([(events, payloads)])[0]

    def append_many(self, batches: Sequence[Batch]) -> list[AppendResult]:
        groups = []
        for events, payloads in batches:
            if payloads is None:
                payloads = [EVENT_ADAPTER.dump_json(e) for e in events]
            groups.append([(e.event_id, p) for e, p in zip(events, payloads, strict=True)])
        if not any(groups):
            return [AppendResult(0, 0) for _ in groups]
        if self._lock_fd < 0:
            raise BackendUnavailable(f"event log {self.url}: closed")
        accepted: list[int] = []
        try:
            with self._thread_lock:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
                try:
                    cur = self._db.cursor()
                    cur.execute("BEGIN IMMEDIATE")
                    try:
                        for rows in groups:
                            cur.executemany(
                                "INSERT OR IGNORE INTO events(event_id, payload) VALUES (?, ?)",
                                rows,
                            )
                            accepted.append(max(cur.rowcount, 0) if rows else 0)
                        cur.execute("COMMIT")
                    except BaseException:
                        cur.execute("ROLLBACK")
                        raise
                finally:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        except (sqlite3.Error, OSError) as exc:
            raise BackendUnavailable(f"event log {self.url}: append failed: {exc}") from exc
        return [AppendResult(a, len(rows) - a) for a, rows in zip(accepted, groups, strict=True)]

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
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
