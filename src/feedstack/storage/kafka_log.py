"""Event log on Kafka: ``kafka://host:port[,host:port]/topic?partitions=N`` (confluent-kafka).

Layout. One topic of N partitions (created with that count when absent; an existing topic must
have it: adding partitions would move keys). User events (impression, click, dwell, hide,
user_profile) are keyed by user id, so a user's events share a partition and keep their order,
and N feature workers in a consumer group split the users. ``article_published`` is keyed by
article id and written to *every* partition (the copies outside partition 0 carry the header
``fs-copy``): a worker that owns some partitions needs every article's topic and region to
compute its users' affinities, and a copy in the user's own partition comes, in that partition's
order, before any click on the article appended after the publish was acknowledged. Readers of
the whole log skip the copies.

Durable before acknowledged: acks=all, and ``append`` waits for every delivery report; a failed
delivery raises BackendUnavailable. One request in flight per connection keeps a partition's
order under retries. The idempotent producer is off: it is not safe on every broker (tansu can
lose acknowledged messages across a crash with it), and the event id does its job.

Dedupe (the contract's idempotence) has two halves:
- ``append`` checks ids against an index of every event id in the topic, built in this process
  by reading the topic once (ids only are kept, ~100 bytes per event) and brought up to date
  before an append (at most every ``index_refresh_s``): re-sending a batch or re-ingesting a file
  writes nothing, even after a restart. Two appenders racing on the same id can both write it
  (Kafka has no conditional write), and a batch that fails half-way may be partly written:
  ``append`` is not atomic on Kafka (the caller's retry completes it and dedupe drops the rest).
  ``append_many`` (a serving process's group commit) is ``append`` over several batches with
  one flush, and no more atomic.
- readers drop the duplicates that got in: the whole-log reader returns a record only if it is
  its id's first occurrence in the topic (ids share a partition, so "first" is the lowest
  offset there, the same for every reader); the feature workers drop an id seen in the last
  ``DEDUPE_WINDOW`` records of their partition (``features/dedupe.py``), which covers a
  producer retry and a client's retry through another appender.

Order and offsets: see kafka_read.py (merge by the appender's sequence number; vector offsets).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

from feedstack.core.errors import BackendUnavailable, ConfigError, InputError
from feedstack.core.events import EVENT_ADAPTER, ArticlePublished, Event
from feedstack.storage.eventlog import AppendResult, Batch, LogRecord
from feedstack.storage.kafka_read import (
    APPENDED,
    COPY,
    EVENT_ID,
    SEQ,
    KafkaRecord,
    MergedReader,
    consumer_config,
    decode_position,
    encode_position,
)

MAX_PARTITIONS = 1_024
_PACK = 1 << 40  # index value: partition * _PACK + offset


@dataclass(frozen=True)
class KafkaTarget:
    url: str
    bootstrap: str  # host:port[,host:port]
    topic: str
    partitions: int


def parse_kafka_url(url: str, key: str = "event_log") -> KafkaTarget:
    """``kafka://host:port[,host:port]/topic?partitions=N`` or ConfigError naming the key."""
    parts = urlsplit(url)
    where = f"backends.{key} = {url!r}"
    if parts.scheme != "kafka" or not parts.netloc:
        raise ConfigError(f"{where}: expected kafka://host:port/topic?partitions=N")
    topic = parts.path.strip("/")
    if not topic or "/" in topic:
        raise ConfigError(
            f"{where}: missing topic name after the servers (kafka://host:port/topic)"
        )
    query = parse_qs(parts.query)
    unknown = set(query) - {"partitions"}
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {sorted(unknown)}; valid: partitions")
    raw = query.get("partitions", ["1"])[0]
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_PARTITIONS:
        raise ConfigError(f"{where}: partitions={raw!r} must be an integer in 1..{MAX_PARTITIONS}")
    return KafkaTarget(url, parts.netloc, topic, n)


def producer_config(bootstrap: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": False,
        "max.in.flight.requests.per.connection": 1,
        "partitioner": "murmur2_random",  # the Java client's: other producers agree on keys
        "linger.ms": 2,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 1_000_000,
        "message.timeout.ms": 30_000,
        "socket.connection.setup.timeout.ms": 10_000,
        "log_level": 3,
    }


def ensure_topic(target: KafkaTarget, timeout_s: float = 15.0) -> None:
    """Create the topic with its partition count, or check an existing one has it."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient({"bootstrap.servers": target.bootstrap, "log_level": 3})
    where = f"event log {target.url}"
    try:
        futures = admin.create_topics(
            [NewTopic(target.topic, num_partitions=target.partitions, replication_factor=1)],
            request_timeout=timeout_s,
        )
        futures[target.topic].result(timeout_s)
        return
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        if err is None or err.code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise BackendUnavailable(f"{where}: cannot create the topic: {exc}") from exc
    except Exception as exc:  # a timeout from the future (no broker)
        raise BackendUnavailable(f"{where}: cannot reach the servers: {exc}") from exc
    try:
        meta = admin.list_topics(target.topic, timeout=timeout_s)
    except KafkaException as exc:
        raise BackendUnavailable(f"{where}: {exc}") from exc
    have = len(meta.topics[target.topic].partitions)
    if have != target.partitions:
        raise ConfigError(
            f"backends.event_log = {target.url!r}: topic {target.topic!r} has {have} partitions, "
            f"the URL says {target.partitions}; a topic keeps its partition count (adding "
            "partitions would move users to other partitions): use a new topic"
        )


class KafkaEventLog:
    def __init__(self, url: str, *, index_refresh_s: float = 1.0) -> None:
        from confluent_kafka import Producer

        self.url = url
        self.target = parse_kafka_url(url)
        self.topic = self.target.topic
        self.partitions = self.target.partitions
        self.index_refresh_s = index_refresh_s
        ensure_topic(self.target)
        self._producer = Producer(producer_config(self.target.bootstrap))
        self._appended = APPENDED.setdefault((self.target.bootstrap, self.topic), {})
        self._seq = 0
        # Id index: event id -> partition * _PACK + offset of its first occurrence.
        self._ids: dict[str, int] = {}
        self._scanner: Any = None
        self._scan: MergedReader | None = None
        self._indexed_at = -1e18
        # Whole-log reader: a consumer assigned to every partition, and where it stands.
        self._reader: Any = None
        self._merge: MergedReader | None = None
        self._read_pos: list[int] | None = None  # consumer position (records taken)
        self._read_emitted: str | None = None  # offset of the last record returned

    # --------------------------------------------------------------------------- appending
    def _next_seq(self) -> int:
        self._seq = max(self._seq + 1, time.time_ns())
        return self._seq

    def append(
        self, events: Sequence[Event], payloads: Sequence[bytes] | None = None
    ) -> AppendResult:
        return self.append_many([(events, payloads)])[0]

    def append_many(self, batches: Sequence[Batch]) -> list[AppendResult]:
        """Every batch produced, then one flush (one wait for all delivery reports: the group
        commit); each batch's result as if appended alone, in order. Not atomic, like
        ``append``: a failed call may have written part of any batch (the retry completes it)."""
        if not any(len(events) for events, _ in batches):
            return [AppendResult(0, 0) for _ in batches]
        if time.monotonic() - self._indexed_at >= self.index_refresh_s:
            self._catch_up()
        ids = self._ids
        seen: set[str] = set()
        delivered: list[tuple[str, int, int]] = []
        accepted = [0] * len(batches)
        dupes = [0] * len(batches)
        errors: list[Any] = []

        appended = self._appended

        def report(where: tuple[str, int] | None, err: Any, msg: Any) -> None:
            # Runs inside flush(); an exception here would be lost in librdkafka's C code.
            if err is not None:
                errors.append(err)
                return
            p, off = msg.partition(), msg.offset()
            if where is not None:
                delivered.append((where[0], p, off))
                accepted[where[1]] += 1
            if off + 1 > appended.get(p, 0):
                appended[p] = off + 1

        produce = self._producer.produce
        copy = partial(report, None)
        try:
            for b, (events, payloads) in enumerate(batches):
                if payloads is None:
                    payloads = [EVENT_ADAPTER.dump_json(e) for e in events]
                for ev, payload in zip(events, payloads, strict=True):
                    eid = ev.event_id
                    if eid in ids or eid in seen:
                        dupes[b] += 1
                        continue
                    seen.add(eid)
                    headers = [
                        (SEQ, self._next_seq().to_bytes(8, "big")),
                        (EVENT_ID, eid.encode()),
                    ]
                    first = partial(report, (eid, b))
                    if isinstance(ev, ArticlePublished):
                        key = ev.article_id.encode()
                        for p in range(self.partitions):
                            extra = [(COPY, b"1")] if p else []
                            self._produce(
                                produce, payload, key, headers + extra, copy if p else first, p
                            )
                    else:
                        key = ev.user_id.encode()  # every other event type has a user
                        self._produce(produce, payload, key, headers, first, None)
            left = self._producer.flush(60.0)
        except (BufferError, KeyError) as exc:
            raise BackendUnavailable(f"event log {self.url}: append failed: {exc}") from exc
        finally:
            for eid, p, off in delivered:
                ids.setdefault(eid, p * _PACK + off)
        if errors or left:
            raise BackendUnavailable(
                f"event log {self.url}: append failed: {len(errors)} undelivered "
                f"({errors[0] if errors else f'{left} still queued after 60 s'}); "
                f"{len(delivered)} of the batch were written, a retry adds only the rest"
            )
        return [AppendResult(a, d) for a, d in zip(accepted, dupes, strict=True)]

    def _produce(
        self,
        produce: Any,
        payload: bytes,
        key: bytes,
        headers: list[tuple[str, bytes]],
        report: Any,
        partition: int | None,
    ) -> None:
        kwargs: dict[str, Any] = {"key": key, "headers": headers, "on_delivery": report}
        if partition is not None:
            kwargs["partition"] = partition
        try:
            produce(self.topic, payload, **kwargs)
        except BufferError:  # local queue full: let deliveries drain, then once more
            self._producer.poll(1.0)
            produce(self.topic, payload, **kwargs)

    # ----------------------------------------------------------------------------- index
    def _catch_up(self) -> None:
        """Bring the id index up to the end of the topic."""
        if self._scan is None:
            self._scanner, self._scan = self._open_reader([0] * self.partitions)
        scan = self._scan
        ids = self._ids
        while True:
            scan.fill(0.0, 50_000)
            recs = [r for b in scan.buffers.values() for r in b]
            for b in scan.buffers.values():
                b.clear()
            for r in recs:
                if not r.copy:
                    ids.setdefault(r.event_id, r.partition * _PACK + r.offset)
            if not recs:
                break
        self._indexed_at = time.monotonic()

    def _open_reader(self, positions: list[int]) -> tuple[Any, MergedReader]:
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        try:
            consumer = Consumer(consumer_config(self.target.bootstrap))
            consumer.assign([TopicPartition(self.topic, p, off) for p, off in enumerate(positions)])
        except KafkaException as exc:
            raise BackendUnavailable(f"event log {self.url}: {exc}") from exc
        merge = MergedReader(consumer, self.target.bootstrap, self.topic)
        merge.reset(dict(enumerate(positions)))
        return consumer, merge

    # ----------------------------------------------------------------------------- reading
    def read(self, after: str | None = None, limit: int = 10_000) -> list[LogRecord]:
        parse = EVENT_ADAPTER.validate_json
        return [LogRecord(offset, parse(p)) for offset, p in self.read_raw(after, limit)]

    def read_raw(self, after: str | None = None, limit: int = 10_000) -> list[tuple[str, bytes]]:
        try:
            start = decode_position(after, self.partitions)
        except ValueError as exc:
            raise InputError(f"event log {self.url}: {exc}") from exc
        if self._merge is None or after != self._read_emitted or self._read_pos is None:
            if self._reader is not None:
                self._reader.close()
            self._reader, self._merge = self._open_reader(start)
            self._read_pos = list(start)
        merge, pos = self._merge, self._read_pos
        out: list[tuple[str, bytes]] = []
        while len(out) < limit:
            merge.fill(0.0, limit - len(out))
            recs = merge.take(limit - len(out))
            if not recs:
                break
            for r in recs:
                pos[r.partition] = r.offset + 1
                if self._first(r):
                    out.append((encode_position(pos), r.payload))
        self._read_emitted = out[-1][0] if out else after
        if not out:
            self._read_pos = None  # a later read starts afresh from ``after``
        return out

    def _first(self, r: KafkaRecord) -> bool:
        """Is ``r`` the first occurrence of its event id (and not a copy)?"""
        if r.copy:
            return False
        here = r.partition * _PACK + r.offset
        first = self._ids.setdefault(r.event_id, here)
        if first == here:
            return True
        if first > here and first // _PACK == r.partition:  # indexed out of order: fix it
            self._ids[r.event_id] = here
            return True
        return False

    def depth_after(self, after: str | None) -> int | None:
        """Records stored past ``after`` (copies and duplicates included), from the whole-log
        reader's last fetch (its high watermarks); None before any read."""
        from confluent_kafka import TopicPartition

        if self._reader is None:
            return None
        start = decode_position(after, self.partitions)
        total = 0
        for p in range(self.partitions):
            _, high = self._reader.get_watermark_offsets(TopicPartition(self.topic, p), cached=True)
            if high is None or high < 0:
                return None
            total += max(0, high - start[p])
        return total

    def count(self) -> int:
        self._catch_up()
        return len(self._ids)

    def partition_records(self, partition: int) -> list[KafkaRecord]:
        """Every record of one partition as stored, copies and duplicates included (tests)."""
        consumer, merge = self._open_reader([0] * self.partitions)
        try:
            merge.fill(0.0, 10_000_000)
            return list(merge.buffers[partition])
        finally:
            consumer.close()

    # ---------------------------------------------------------------------------- lifecycle
    def drop(self) -> None:
        """Delete the topic (tests)."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.target.bootstrap, "log_level": 3})
        for fut in admin.delete_topics([self.topic], operation_timeout=10).values():
            # Already gone, or the broker cannot delete: nothing to keep either way.
            with contextlib.suppress(Exception):
                fut.result(15)
        APPENDED.pop((self.target.bootstrap, self.topic), None)

    def close(self) -> None:
        self._producer.flush(30.0)
        for c in (self._reader, self._scanner):
            if c is not None:
                c.close()
        self._reader = self._scanner = None
        self._merge = self._scan = None
