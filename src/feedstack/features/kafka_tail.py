"""``KafkaGroupTail``: the LogTail of a Kafka event log, as one member of a consumer group.

The group's coordinator splits the topic's partitions among the members; this member reads the
partitions it is given, merged in the log's order (kafka_read.py), and hands out vector offsets
like the log's own. The checkpoint decides where reading starts, never the group's committed
offsets: on every assignment each partition is positioned at ``after`` (the checkpoint's offset)
or, with an ``on_assign`` hook (the group worker's per-partition checkpoints), wherever the hook
says. ``ack`` commits the offsets a checkpoint covers, so the group's lag shows in Kafka's own
tools; a commit refused after a rebalance is harmless and ignored.

``copies=True`` also returns the copies of broadcast events (article_published in every
partition): a worker that owns only some partitions needs them. A member whose process vanishes
keeps its partitions until its session times out (``session_timeout_ms``); a member that stops
leaves the group at once.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from feedstack.core.errors import BackendUnavailable
from feedstack.storage.kafka_log import KafkaEventLog
from feedstack.storage.kafka_read import (
    KafkaRecord,
    MergedReader,
    consumer_config,
    decode_position,
    encode_position,
)

AssignHook = Callable[[list[int]], dict[int, int]]
RevokeHook = Callable[[list[int]], None]
SESSION_TIMEOUT_MS = 6_000  # tansu's JoinGroup waits half of it; Kafka's default is 45 s


class KafkaGroupTail:
    def __init__(
        self,
        log: KafkaEventLog,
        after: str | None = None,
        *,
        group: str,
        consumer: str,
        copies: bool = False,
        on_assign: AssignHook | None = None,
        on_revoke: RevokeHook | None = None,
        session_timeout_ms: int = SESSION_TIMEOUT_MS,
        join_timeout_s: float = 60.0,
    ) -> None:
        from confluent_kafka import Consumer, KafkaException

        self.url = log.url
        self.topic = log.topic
        self.group = group
        self.consumer_name = consumer
        self.copies = copies
        self.positions = decode_position(after, log.partitions)  # next offset per partition
        self.assigned: list[int] = []
        self.rebalances = 0
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._callback_error: BaseException | None = None
        self._closing = False
        conf = consumer_config(
            log.target.bootstrap,
            **{
                "group.id": group,
                "client.id": consumer,
                "session.timeout.ms": session_timeout_ms,
                "heartbeat.interval.ms": max(100, session_timeout_ms // 6),
            },
        )
        try:
            self._c: Any = Consumer(conf)
            self._c.subscribe(
                [self.topic],
                on_assign=self._assigned,
                on_revoke=self._revoked,
                on_lost=self._revoked,
            )
        except KafkaException as exc:
            raise BackendUnavailable(f"log tail {self.url}: {exc}") from exc
        self.merge = MergedReader(self._c, log.target.bootstrap, self.topic)
        self.merge.reset({})
        self._join(join_timeout_s)

    def _join(self, timeout_s: float) -> None:
        """Wait for the group's first assignment (maybe empty: more members than partitions),
        so that an opened tail is a member and its first poll reads. ``timeout_s`` 0: no wait."""
        if timeout_s <= 0:
            return
        deadline = time.monotonic() + timeout_s
        while not self.rebalances:
            if time.monotonic() > deadline:
                self._c.close()
                raise BackendUnavailable(
                    f"log tail {self.url}: no assignment from group {self.group!r} in "
                    f"{timeout_s:g} s"
                )
            for m in self._c.consume(1, 0.05):  # serves the rebalance callbacks
                self.merge._receive(m)
            self._raise_callback_error()

    # ------------------------------------------------------------------------ rebalancing
    # librdkafka calls these from inside consume(); an exception escaping into its C code can
    # crash the process, so each is caught here and raised again once consume() has returned.
    def _assigned(self, consumer: Any, parts: list[Any]) -> None:
        try:
            self._assign_now(consumer, parts)
        except BaseException as exc:
            self._callback_error = exc

    def _revoked(self, consumer: Any, parts: list[Any]) -> None:
        try:
            self._revoke_now(consumer, parts)
        except BaseException as exc:
            self._callback_error = exc

    def _raise_callback_error(self) -> None:
        exc, self._callback_error = self._callback_error, None
        if exc is not None:
            raise exc

    def _assign_now(self, consumer: Any, parts: list[Any]) -> None:
        ps = sorted(tp.partition for tp in parts)
        start = self._on_assign(ps) if self._on_assign else {p: self.positions[p] for p in ps}
        for tp in parts:
            tp.offset = start[tp.partition]
            self.positions[tp.partition] = start[tp.partition]
        consumer.assign(parts)
        self.merge.add({p: start[p] for p in ps})
        self.assigned = sorted(set(self.assigned) | set(ps))
        self.rebalances += 1  # counted on every assignment, an empty one too

    def _revoke_now(self, consumer: Any, parts: list[Any]) -> None:
        ps = sorted(tp.partition for tp in parts)
        if self._on_revoke and not self._closing:
            self._on_revoke(ps)
        self.merge.drop(ps)
        self.assigned = [p for p in self.assigned if p not in ps]
        if not self._closing:
            consumer.unassign()

    # ---------------------------------------------------------------------------- reading
    def poll_records(self, max_events: int, timeout_s: float) -> list[tuple[str, KafkaRecord]]:
        """Like ``poll``, with each record's partition, offset and headers."""
        merge = self.merge
        try:
            merge.fill(timeout_s, max_events)
        finally:
            self._raise_callback_error()
        out = []
        pos = self.positions
        for r in merge.take(max_events):
            pos[r.partition] = r.offset + 1
            if self.copies or not r.copy:
                out.append((encode_position(pos), r))
        return out

    def poll(self, max_events: int, timeout_s: float) -> list[tuple[str, bytes]]:
        return [(off, r.payload) for off, r in self.poll_records(max_events, timeout_s)]

    # ------------------------------------------------------------------------ checkpoints
    def ack(self, offset: str) -> None:
        vec = decode_position(offset, len(self.positions))
        self.commit({p: vec[p] for p in self.assigned})

    def commit(self, next_offsets: dict[int, int]) -> None:
        """Commit ``partition -> next offset`` for the partitions this member holds."""
        from confluent_kafka import KafkaException, TopicPartition

        tps = [
            TopicPartition(self.topic, p, off)
            for p, off in next_offsets.items()
            if p in self.assigned and off > 0
        ]
        if not tps:
            return
        # Refused after a rebalance: harmless, the checkpoint, not the commit, is the truth.
        with contextlib.suppress(KafkaException):
            self._c.commit(offsets=tps, asynchronous=False)

    def depth(self) -> int | None:
        """Records past the position in this member's partitions (from the fetch responses'
        high watermarks; None before the first fetch)."""
        from confluent_kafka import TopicPartition

        total = 0
        for p in self.assigned:
            try:
                _, high = self._c.get_watermark_offsets(TopicPartition(self.topic, p), cached=True)
            except Exception:
                return None
            if high is None or high < 0:
                return None
            total += max(0, high - self.positions[p])
        return total

    def close(self) -> None:
        """Leave the group (the coordinator hands the partitions on at once). The partitions'
        owner has checkpointed what it wants kept before calling this."""
        self._closing = True
        self._c.close()
