"""Reading a Kafka topic in one deterministic order: the parts the event log and the tail share.

Kafka orders records only within a partition. The log gives the whole topic one order anyway:
every record carries the appender's sequence number (header ``fs-seq``, strictly increasing in
one appender process), and readers merge the partitions by ``(seq, partition, offset)``. For one
appender that is exactly the append order; for several it is their clocks' order; for a given
topic content it is always the same order, so a replay is reproducible and offsets are stable.

A position in the whole topic is a vector: the next offset to read in each partition. As a log
offset it is written ``"{sum}@{o0}.{o1}...."``; the sum leads so offsets sort in merge order.

A reader can only hand out a record once it knows the next record of every other partition (or
that the partition is at its end), so the merge waits for a fetch from each partition. The end of
a partition comes from the fetch responses' high watermark (``enable.partition.eof``), which is
right on every broker (tansu's ListOffsets is not, so no reader uses it).
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from feedstack.core.errors import BackendUnavailable

SEQ = "fs-seq"  # 8 bytes, big-endian: the appender's sequence number
EVENT_ID = "fs-id"  # the event id (readers dedupe without parsing JSON)
COPY = "fs-copy"  # present on the copies of a broadcast event outside partition 0
_FETCH_CHUNK = 10_000


def encode_position(positions: Sequence[int]) -> str:
    return f"{sum(positions)}@{'.'.join(str(p) for p in positions)}"


def decode_position(offset: str | None, partitions: int) -> list[int]:
    """The vector of ``offset`` (None: the beginning). Raises ValueError when malformed."""
    if offset is None:
        return [0] * partitions
    total, sep, parts = offset.partition("@")
    if not sep:
        raise ValueError(f"not a Kafka log offset: {offset!r}")
    vec = [int(p) for p in parts.split(".")]
    if len(vec) != partitions or sum(vec) != int(total) or min(vec) < 0:
        raise ValueError(f"offset {offset!r} does not fit a topic of {partitions} partitions")
    return vec


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    partition: int
    offset: int
    seq: int
    event_id: str
    copy: bool
    payload: bytes


def consumer_config(bootstrap: str, **extra: Any) -> dict[str, Any]:
    """librdkafka settings of every reader: no auto commit (checkpoints decide), end-of-partition
    events on, short fetch waits (a reader waits for every partition before it can merge)."""
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": "feedstack-reader",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
        "fetch.wait.max.ms": 10,
        "socket.connection.setup.timeout.ms": 10_000,
        "topic.metadata.refresh.interval.ms": 60_000,
        "log_level": 3,
    }
    conf.update(extra)
    return conf


def to_record(msg: Any) -> KafkaRecord:
    headers = dict(msg.headers() or ())
    seq = headers.get(SEQ)
    return KafkaRecord(
        partition=msg.partition(),
        offset=msg.offset(),
        seq=int.from_bytes(seq, "big") if seq else 0,
        event_id=(headers.get(EVENT_ID) or b"").decode(),
        copy=COPY in headers,
        payload=bytes(msg.value() or b""),
    )


# Ends of partitions this process has appended to (from delivery reports), per (servers, topic):
# a reader in the same process waits for them, so a read right after an append sees it (the
# end-of-partition flag a reader holds may predate the append).
APPENDED: dict[tuple[str, str], dict[int, int]] = {}
SETTLE_TIMEOUT_S = 30.0  # how long a reader waits for a partition's first fetch before failing


class MergedReader:
    """Records of some partitions of one topic, in merge order, from given positions.

    The consumer is given (assigned or subscribed by the owner); ``reset`` says where each
    partition's reading starts. A partition is *settled* when a record of it is buffered, or it
    is at its end and nothing this process appended lies beyond; ``take`` hands out records only
    while every partition is settled (an unsettled one might hold the next record)."""

    def __init__(self, consumer: Any, bootstrap: str, topic: str) -> None:
        self.consumer = consumer
        self.topic = topic
        self.known_end = APPENDED.setdefault((bootstrap, topic), {})
        self.buffers: dict[int, deque[KafkaRecord]] = {}
        self.at_end: dict[int, bool] = {}
        self.next: dict[int, int] = {}  # next offset to buffer, per partition

    def reset(self, positions: dict[int, int]) -> None:
        self.buffers, self.at_end, self.next = {}, {}, {}
        self.add(positions)

    def add(self, positions: dict[int, int]) -> None:
        for p, off in positions.items():
            self.buffers[p] = deque()
            self.at_end[p] = False
            self.next[p] = off

    def drop(self, partitions: Sequence[int]) -> None:
        for p in partitions:
            self.buffers.pop(p, None)
            self.at_end.pop(p, None)
            self.next.pop(p, None)

    def _settled(self, p: int) -> bool:
        if self.buffers[p]:
            return True
        return self.at_end[p] and self.next[p] >= self.known_end.get(p, 0)

    def settled(self) -> bool:
        return all(self._settled(p) for p in self.buffers)

    def fill(self, wait_s: float, want: int) -> None:
        """Fetch until every partition is settled (failing after SETTLE_TIMEOUT_S), waiting up to
        ``wait_s`` for a first record when none is buffered, then take what else has arrived
        without waiting, up to about ``want`` records."""
        now = time.monotonic()
        settle_by, new_by = now + SETTLE_TIMEOUT_S, now + wait_s
        while True:
            settled = self.settled()
            now = time.monotonic()
            if settled and (self.buffered >= want or (not self.buffered and now >= new_by)):
                return
            if not settled and now >= settle_by:
                late = [p for p in self.buffers if not self._settled(p)]
                raise BackendUnavailable(
                    f"kafka topic {self.topic}: no fetch answer for partitions {late} "
                    f"in {SETTLE_TIMEOUT_S:g} s"
                )
            block = not settled or not self.buffered
            until = settle_by if not settled else new_by
            wait = max(0.0, min(until - now, 0.05)) if block else 0.0
            msgs = self.consumer.consume(max(1, min(want, _FETCH_CHUNK)), wait)
            for m in msgs:
                self._receive(m)
            if not msgs and settled and not block:
                return

    def _receive(self, m: Any) -> None:
        p = m.partition()
        if p not in self.buffers:
            return  # revoked meanwhile
        err = m.error()
        if err is not None:
            if err.code() == _partition_eof():
                self.at_end[p] = True
                self.next[p] = max(self.next[p], int(m.offset()))
                return
            raise BackendUnavailable(f"kafka topic {self.topic}: {err}")
        self.at_end[p] = False
        rec = to_record(m)
        if rec.offset < self.next[p]:
            return  # already buffered (a re-delivery after a seek)
        self.next[p] = rec.offset + 1
        self.buffers[p].append(rec)

    def take(self, limit: int) -> list[KafkaRecord]:
        """Up to ``limit`` records in merge order, as far as the merge is certain."""
        out: list[KafkaRecord] = []
        if not self.settled():
            return out
        heads = [(b[0].seq, p, b[0].offset) for p, b in self.buffers.items() if b]
        heapq.heapify(heads)
        while heads and len(out) < limit:
            _, p, _ = heapq.heappop(heads)
            buf = self.buffers[p]
            out.append(buf.popleft())
            if buf:
                heapq.heappush(heads, (buf[0].seq, p, buf[0].offset))
            elif not self._settled(p):
                break  # this partition's next record is unknown: it might come first
        return out

    @property
    def buffered(self) -> int:
        return sum(len(b) for b in self.buffers.values())


def _partition_eof() -> int:
    from confluent_kafka import KafkaError

    return int(KafkaError._PARTITION_EOF)
