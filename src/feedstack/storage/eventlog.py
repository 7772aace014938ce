"""The event log port: a durable, idempotent, ordered log of validated events.

Backends: ``sqlite://`` (embedded default), ``redis://`` (Streams), ``kafka://``, and ``memory://NAME``
(in-process, for tests and local runs: memory_log.py).

Contract (every backend, proved by tests/contract/test_event_log.py):
- ``append(events)`` is durable before it returns: once it returns, every accepted event survives
  a crash of this process. It is atomic per call on SQLite and Redis (if it raises, none of the
  batch was written); on Kafka a failed call may have written part of the batch, which the
  caller's retry completes (the ingest pipeline acknowledges nothing of a failed batch, and dedupe
  drops the part already written).
- Idempotent: an event whose ``event_id`` is already in the log is not written again; the result
  counts it as a duplicate (duplicates inside one batch count too; the first one wins). On Kafka
  the appender checks an id index it builds from the topic, and readers drop any duplicate that
  two racing appenders let in (kafka_log.py), so readers see every event once either way.
- ``payloads``, when given, are the events' JSON exactly as received and validated (aligned with
  ``events``); the log stores them instead of serializing again (the ingest fast path). Reading
  such a payload back yields the same event.
- ``append_many(batches)`` appends several batches in one durable step (one transaction, one
  round trip or one flush: a group commit) and returns one result per batch, exactly what
  appending them one after another would have returned (an event of a later batch already in an
  earlier one is that later batch's duplicate). Atomic where ``append`` is (SQLite, Redis); on
  Kafka a failed call may have written part of it, as with ``append``.
- ``read(after, limit)`` returns records in append order, each with an opaque, increasing
  ``offset``; ``after=None`` starts at the beginning. Offsets are stable across restarts. (Kafka
  orders a topic only per partition; the log merges partitions by the appender's sequence
  number, which is the append order for one appender: kafka_read.py.)
  ``read_raw`` is the same without parsing: ``(offset, JSON bytes)`` pairs (bulk export).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeAlias

from feedstack.core.events import Event
from feedstack.storage.urls import parse_backend_url

EVENT_LOG_SCHEMES = ("sqlite", "redis", "kafka", "memory")


@dataclass(frozen=True)
class AppendResult:
    accepted: int
    duplicates: int


# One batch of ``append_many``: events and, optionally, their payloads as received.
Batch: TypeAlias = "tuple[Sequence[Event], Sequence[bytes] | None]"


@dataclass(frozen=True)
class LogRecord:
    offset: str
    event: Event


class EventLog(Protocol):
    url: str

    def append(
        self, events: Sequence[Event], payloads: Sequence[bytes] | None = None
    ) -> AppendResult: ...

    def append_many(self, batches: Sequence[Batch]) -> list[AppendResult]: ...

    def read(self, after: str | None = None, limit: int = 10_000) -> list[LogRecord]: ...

    def read_raw(
        self, after: str | None = None, limit: int = 10_000
    ) -> list[tuple[str, bytes]]: ...

    def count(self) -> int: ...

    def close(self) -> None: ...


def iter_log(log: EventLog, after: str | None = None, batch: int = 10_000) -> Iterator[LogRecord]:
    """Every record after ``after``, in order, read in batches."""
    while True:
        records = log.read(after, batch)
        if not records:
            return
        yield from records
        after = records[-1].offset


def open_event_log(url: str, project: Path) -> EventLog:
    """Open the event log named by ``url`` (spec key ``backends.event_log``)."""
    parsed = parse_backend_url(url, "event_log", EVENT_LOG_SCHEMES, project)
    if parsed.scheme == "sqlite":
        from feedstack.storage.sqlite_log import SqliteEventLog

        assert parsed.path is not None
        return SqliteEventLog(parsed.path, url=url)
    if parsed.scheme == "memory":
        from feedstack.storage.memory_log import MemoryEventLog

        return MemoryEventLog(url.split("://", 1)[1] or "default")
    if parsed.scheme == "kafka":
        from feedstack.storage.kafka_log import KafkaEventLog

        return KafkaEventLog(url)
    from feedstack.storage.redis_log import RedisStreamEventLog

    return RedisStreamEventLog(url, prefix=parsed.prefix)
