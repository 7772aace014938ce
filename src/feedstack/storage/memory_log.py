"""The in-process event log (``memory://NAME``): the event-log contract without a server or file.

For tests and local runs that need no durability across processes: every log of a name lives as
long as the Python process, so ``open_event_log("memory://x")`` twice gives the same records (as
reopening a SQLite file does), and ``drop(name)`` forgets one. It is durable only in the sense
the contract can mean in one process: an append that returned is never lost while the process
lives; nothing survives the process. Appends are atomic per call (one lock), idempotent on
``event_id``, and the offset is the record's 1-based sequence number, as on SQLite.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from feedstack.core.errors import BackendUnavailable
from feedstack.core.events import EVENT_ADAPTER, Event
from feedstack.storage.eventlog import AppendResult, Batch, LogRecord


@dataclass
class _Records:
    payloads: list[bytes] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


_LOGS: dict[str, _Records] = {}
_LOGS_LOCK = threading.Lock()


def drop(name: str) -> None:
    """Forget the log ``name`` (its records go with it)."""
    with _LOGS_LOCK:
        _LOGS.pop(name, None)


class MemoryEventLog:
    def __init__(self, name: str) -> None:
        self.url = f"memory://{name}"
        self.name = name
        with _LOGS_LOCK:
            self._records: _Records | None = _LOGS.setdefault(name, _Records())

    def _open(self) -> _Records:
        if self._records is None:
            raise BackendUnavailable(f"event log {self.url}: closed")
        return self._records

    def append(
        self, events: Sequence[Event], payloads: Sequence[bytes] | None = None
    ) -> AppendResult:
        return self.append_many([(events, payloads)])[0]

    def append_many(self, batches: Sequence[Batch]) -> list[AppendResult]:
        records = self._open()
        # Serialize before taking the lock: an event that cannot be dumped fails the whole call
        # before anything is written (atomic per call).
        groups = []
        for events, payloads in batches:
            if payloads is None:
                payloads = [EVENT_ADAPTER.dump_json(e) for e in events]
            groups.append([(e.event_id, p) for e, p in zip(events, payloads, strict=True)])
        out = []
        with records.lock:
            for rows in groups:
                accepted = 0
                for event_id, payload in rows:
                    if event_id in records.ids:
                        continue
                    records.ids.add(event_id)
                    records.payloads.append(bytes(payload))
                    accepted += 1
                out.append(AppendResult(accepted, len(rows) - accepted))
        return out

    def read(self, after: str | None = None, limit: int = 10_000) -> list[LogRecord]:
        parse = EVENT_ADAPTER.validate_json
        return [LogRecord(offset, parse(p)) for offset, p in self.read_raw(after, limit)]

    def read_raw(self, after: str | None = None, limit: int = 10_000) -> list[tuple[str, bytes]]:
        records = self._open()
        start = int(after) if after is not None else 0
        with records.lock:
            chunk = records.payloads[start : start + limit]
        return [(str(start + i + 1), p) for i, p in enumerate(chunk)]

    def count(self) -> int:
        records = self._open()
        with records.lock:
            return len(records.payloads)

    def depth_after(self, after: str | None) -> int:
        """Records past offset ``after`` (the polling tail's queue depth): offsets are 1..n."""
        return self.count() - int(after or 0)

    def close(self) -> None:
        self._records = None
