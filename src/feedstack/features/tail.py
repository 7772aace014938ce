"""Log tailing: how the feature worker follows the event log.

Port (``LogTail``; one contract suite, tests/contract/test_log_tail.py, runs against every
implementation):
- ``poll(max_events, timeout_s)`` returns up to ``max_events`` ``(offset, JSON bytes)`` pairs in
  log order, each after the previous one returned. It returns as soon as anything is there and
  waits at most ``timeout_s`` when nothing is (a micro-batch is whatever arrived meanwhile, so a
  quiet stream costs no added latency and a busy one batches itself).
- ``ack(offset)`` says that a durable checkpoint covers every entry up to ``offset``. It is called
  *after* the checkpoint is saved, never before: the checkpoint, not the tail, is the source of
  truth for where processing resumes.
- A tail is opened *after* an offset (the checkpoint's, or None for the beginning); it never
  returns an entry at or before that offset.
- ``depth()`` is the number of entries in the log past the position, or None where that is not
  cheap to know.

Implementations:
- ``PollingTail``: any EventLog, by ``read_raw(after)`` in a loop with a short sleep (embedded).
- ``KafkaGroupTail`` (kafka_tail.py): a member of a Kafka consumer group.
- ``RedisGroupTail``: Redis Streams with a consumer group (``XREADGROUP``, ``XACK``). The group's
  pending-entries list holds what was delivered and not yet covered by a checkpoint; on restart
  those entries are read again first (``XREADGROUP`` with id 0) and the ones at or before the
  checkpoint are acknowledged and skipped. A group that does not agree with the checkpoint (it
  lags behind it, an entry after it was already acknowledged, another consumer holds pending
  entries) is recreated at the checkpoint's offset: the checkpoint decides.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from feedstack.core.errors import BackendUnavailable
from feedstack.core.redact import redact_url
from feedstack.storage.eventlog import EventLog

DEFAULT_GROUP = "features"
DEFAULT_CONSUMER = "worker"
_ACK_CHUNK = 10_000  # stream ids per XACK call


class LogTail(Protocol):
    def poll(self, max_events: int, timeout_s: float) -> list[tuple[str, bytes]]: ...

    def ack(self, offset: str) -> None: ...

    def depth(self) -> int | None: ...

    def close(self) -> None: ...


class PollingTail:
    """Follows any EventLog through ``read_raw``; sleeps ``interval_s`` between empty reads.

    ``sleep`` and ``monotonic`` are injected so tests never wait. ``ack`` only records the offset:
    the checkpoint file is this tail's durable cursor.
    """

    def __init__(
        self,
        log: EventLog,
        after: str | None = None,
        *,
        interval_s: float = 0.005,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.position = after
        self.acked = after
        self.interval_s = interval_s
        self._sleep = sleep
        self._monotonic = monotonic

    def poll(self, max_events: int, timeout_s: float) -> list[tuple[str, bytes]]:
        deadline = self._monotonic() + timeout_s
        while True:
            records = self.log.read_raw(self.position, max_events)
            if records:
                self.position = records[-1][0]
                return records
            left = deadline - self._monotonic()
            if left <= 0:
                return []
            self._sleep(min(self.interval_s, left))

    def ack(self, offset: str) -> None:
        self.acked = offset

    def depth(self) -> int | None:
        from feedstack.storage.sqlite_log import SqliteEventLog

        if isinstance(self.log, SqliteEventLog):
            # SQLite offsets are the row sequence numbers 1..n (no gaps: INSERT OR IGNORE and
            # rolled-back transactions allocate none), so the position is the count consumed.
            return self.log.count() - int(self.position or 0)
        depth_after = getattr(self.log, "depth_after", None)  # Kafka: from high watermarks
        return depth_after(self.position) if depth_after is not None else None

    def close(self) -> None:
        """The log belongs to the caller; nothing to release."""


def stream_id(offset: str) -> tuple[int, int]:
    """A Redis stream id ``ms-seq`` as a sortable pair."""
    ms, _, seq = offset.partition("-")
    return int(ms), int(seq or 0)


class RedisGroupTail:
    """Follows ``{prefix}:events`` through the consumer group ``group`` as ``consumer``."""

    def __init__(
        self,
        url: str,
        stream: str,
        after: str | None = None,
        *,
        group: str = DEFAULT_GROUP,
        consumer: str = DEFAULT_CONSUMER,
        client: Any = None,
    ) -> None:
        import redis

        from feedstack.storage.urls import redis_client

        self.url = redact_url(url)
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.after = after
        self._error: type[Exception] = redis.RedisError
        self._r: Any = client or redis_client(url)
        self._floor = stream_id(after) if after is not None else (0, 0)
        self._unacked: deque[str] = deque()
        # Phase 1 reads this consumer's pending entries (cursor = last id seen); then ">".
        self._cursor: str | None = "0"
        try:
            self._open_group()
        except self._error as exc:
            raise BackendUnavailable(f"log tail {self.url} ({stream}): {exc}") from exc

    # ------------------------------------------------------------------------- group setup
    def _open_group(self) -> None:
        info = self._group_info()
        if info is None:
            self._create()
        elif not self._agrees(info):
            self._r.xgroup_destroy(self.stream, self.group)
            self._create()

    def _create(self) -> None:
        start = self.after if self.after is not None else "0"
        self._r.xgroup_create(self.stream, self.group, id=start, mkstream=True)
        self._cursor = None  # a new group has nothing pending

    def _group_info(self) -> dict[str, Any] | None:
        if not self._r.exists(self.stream):
            return None
        for g in self._r.xinfo_groups(self.stream):
            if _s(g["name"]) == self.group:
                return dict(g)
        return None

    def _agrees(self, info: dict[str, Any]) -> bool:
        """Does the group's state continue from the checkpoint without a hole?"""
        delivered = stream_id(_s(info["last-delivered-id"]))
        if delivered < self._floor:
            return False  # the checkpoint is ahead of the group (e.g. made by a backfill)
        summary = self._r.xpending(self.stream, self.group)
        owners = {_s(c["name"]) for c in summary.get("consumers") or []}
        if owners - {self.consumer}:
            return False  # pending entries we could not read back with XREADGROUP 0
        start = f"({self.after}" if self.after is not None else "-"
        first = self._r.xrange(self.stream, min=start, max="+", count=1)
        if not first:
            return True
        first_id = _s(first[0][0])
        if stream_id(first_id) > delivered:
            return True  # not delivered yet: ">" will deliver it
        # Delivered: it must still be pending, else it was acknowledged without our checkpoint.
        return bool(self._r.xpending_range(self.stream, self.group, first_id, first_id, 1))

    # ----------------------------------------------------------------------------- reading
    def poll(self, max_events: int, timeout_s: float) -> list[tuple[str, bytes]]:
        try:
            while self._cursor is not None:  # phase 1: our pending entries, then ">"
                out = self._read_pending(max_events)
                if out:
                    return out
            block = int(timeout_s * 1000)
            reply = self._r.xreadgroup(
                self.group,
                self.consumer,
                {self.stream: ">"},
                count=max_events,
                block=block if block > 0 else None,
            )
        except self._error as exc:
            raise BackendUnavailable(f"log tail {self.url}: read failed: {exc}") from exc
        out = _entries(reply)
        self._unacked.extend(o for o, _ in out)
        return out

    def _read_pending(self, max_events: int) -> list[tuple[str, bytes]]:
        assert self._cursor is not None
        reply = self._r.xreadgroup(
            self.group, self.consumer, {self.stream: self._cursor}, count=max_events
        )
        raw = reply[0][1] if reply else []
        if not raw:
            self._cursor = None
            return []
        self._cursor = _s(raw[-1][0])
        covered, out = [], []
        for entry_id, fields in raw:
            oid = _s(entry_id)
            if stream_id(oid) <= self._floor or not fields:
                covered.append(oid)  # in the checkpoint already (or trimmed): done with it
            else:
                out.append((oid, bytes(fields[b"e"])))
        if covered:
            self._xack(covered)
        self._unacked.extend(o for o, _ in out)
        return out

    def ack(self, offset: str) -> None:
        upto = stream_id(offset)
        done = []
        while self._unacked and stream_id(self._unacked[0]) <= upto:
            done.append(self._unacked.popleft())
        if done:
            try:
                self._xack(done)
            except self._error as exc:
                raise BackendUnavailable(f"log tail {self.url}: ack failed: {exc}") from exc

    def _xack(self, ids: list[str]) -> None:
        for i in range(0, len(ids), _ACK_CHUNK):
            self._r.xack(self.stream, self.group, *ids[i : i + _ACK_CHUNK])

    def depth(self) -> int | None:
        """Entries not yet delivered to the group (Redis >= 7 reports it as the group's lag)."""
        try:
            info = self._group_info()
        except self._error:
            return None
        lag = info.get("lag") if info else None
        return int(lag) if lag is not None else None

    def pending(self) -> int:
        """Entries delivered and not yet covered by a checkpoint (the group's PEL)."""
        return int(self._r.xpending(self.stream, self.group)["pending"])

    def close(self) -> None:
        self._r.close()


def open_tail(
    log: EventLog,
    after: str | None = None,
    *,
    group: str = DEFAULT_GROUP,
    consumer: str = DEFAULT_CONSUMER,
    interval_s: float = 0.005,
) -> LogTail:
    """The natural tail for ``log``: a consumer group on Redis Streams and Kafka, polling
    otherwise."""
    from feedstack.storage.kafka_log import KafkaEventLog
    from feedstack.storage.redis_log import RedisStreamEventLog

    if isinstance(log, KafkaEventLog):
        from feedstack.features.kafka_tail import KafkaGroupTail

        return KafkaGroupTail(log, after, group=group, consumer=consumer)
    if isinstance(log, RedisStreamEventLog):
        return RedisGroupTail(log.url, log.stream, after, group=group, consumer=consumer)
    return PollingTail(log, after, interval_s=interval_s)


def _entries(reply: Any) -> list[tuple[str, bytes]]:
    if not reply:
        return []
    return [(_s(i), bytes(f[b"e"])) for i, f in reply[0][1] if f]


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
