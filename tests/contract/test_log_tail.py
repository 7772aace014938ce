"""One contract suite for log tails, run against every implementation (polling over the embedded
log, Redis consumer group, Kafka consumer group on a real tansu broker, and polling over the
Kafka log, as the serving process's item cache follows it). A restart is modelled as it happens:
the old tail vanishes without a goodbye and a new one opens after the checkpoint's offset.

Kafka: a member that vanishes keeps its partitions until its session times out (6 s here), so
the fixture closes the old member when it opens the next one (it leaves the group without
committing anything): what the broker sees once the session has expired."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from feedstack.features.kafka_tail import KafkaGroupTail
from feedstack.features.tail import LogTail, PollingTail, RedisGroupTail
from feedstack.storage.eventlog import EventLog
from feedstack.storage.kafka_log import KafkaEventLog
from feedstack.storage.memory_log import MemoryEventLog, drop
from feedstack.storage.redis_log import RedisStreamEventLog
from feedstack.storage.sqlite_log import SqliteEventLog
from tests.conftest import REDIS_URL
from tests.factories import click, events

OpenTail = Callable[..., LogTail]


@pytest.fixture(params=["sqlite", "memory", "redis", "kafka-group", "kafka-polling"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventLog]:
    lg: EventLog
    if request.param == "sqlite":
        lg = SqliteEventLog(tmp_path / "events.sqlite")
    elif request.param == "memory":
        lg = MemoryEventLog(tmp_path.name)
    elif request.param.startswith("kafka"):
        broker = request.getfixturevalue("kafka_broker")
        lg = KafkaEventLog(broker.url(request.getfixturevalue("kafka_topic"), 3))
        lg.polling = request.param == "kafka-polling"  # type: ignore[attr-defined]
    else:
        lg = RedisStreamEventLog(REDIS_URL, prefix=request.getfixturevalue("redis_prefix"))
    yield lg
    lg.close()
    if isinstance(lg, KafkaEventLog):
        lg.drop()
    if isinstance(lg, MemoryEventLog):
        drop(lg.name)


@pytest.fixture
def open_tail(log: EventLog) -> Iterator[OpenTail]:
    opened: list[LogTail] = []

    def make(after: str | None = None, consumer: str = "worker") -> LogTail:
        tail: LogTail
        if isinstance(log, RedisStreamEventLog):
            tail = RedisGroupTail(REDIS_URL, log.stream, after, consumer=consumer)
        elif isinstance(log, KafkaEventLog) and not getattr(log, "polling", False):
            for old in opened:
                old.close()  # the old member's session has expired (see the module docstring)
            opened.clear()
            # tansu's JoinGroup waits half the session timeout: 2 s keeps the suite short (the
            # worker's group tests use the 6 s a loaded machine needs to keep members alive).
            tail = KafkaGroupTail(
                log, after, group=f"g-{log.topic}", consumer=consumer, session_timeout_ms=2_000
            )
        else:
            tail = PollingTail(log, after, sleep=_no_sleep)
        opened.append(tail)
        return tail

    yield make
    for t in opened:
        t.close()


def _no_sleep(seconds: float) -> None:
    raise AssertionError("a poll with timeout 0 must not sleep")


def _fill(log: EventLog, start: int, n: int) -> list[str]:
    log.append(events([click(i) for i in range(start, start + n)]))
    return [o for o, _ in log.read_raw(None, 100_000)]


def _ids(records: list[tuple[str, bytes]]) -> list[str]:
    import orjson

    return [orjson.loads(p)["event_id"] for _, p in records]


def _drain(tail: LogTail, batch: int = 4) -> list[tuple[str, bytes]]:
    out = []
    while got := tail.poll(batch, 0.0):
        assert len(got) <= batch
        out += got
    return out


def test_polls_every_entry_in_order_in_micro_batches(log: EventLog, open_tail: OpenTail) -> None:
    offsets = _fill(log, 0, 10)
    tail = open_tail()
    first = tail.poll(4, 0.0)
    assert len(first) == 4
    got = first + _drain(tail)
    assert [o for o, _ in got] == offsets
    assert _ids(got) == [f"c{i}" for i in range(10)]
    assert [p for _, p in got] == [p for _, p in log.read_raw(None, 100)]


def test_empty_poll_returns_nothing_then_follows_new_entries(
    log: EventLog, open_tail: OpenTail
) -> None:
    tail = open_tail()
    assert tail.poll(10, 0.0) == []
    _fill(log, 0, 3)
    assert _ids(tail.poll(10, 0.0)) == ["c0", "c1", "c2"]
    assert tail.poll(10, 0.0) == []
    _fill(log, 3, 2)
    assert _ids(tail.poll(10, 0.0)) == ["c3", "c4"]


def test_opened_after_an_offset_never_returns_it_or_earlier(
    log: EventLog, open_tail: OpenTail
) -> None:
    offsets = _fill(log, 0, 8)
    tail = open_tail(after=offsets[4])
    assert _ids(_drain(tail)) == ["c5", "c6", "c7"]


def test_restart_resumes_after_the_checkpoint_exactly_once(
    log: EventLog, open_tail: OpenTail
) -> None:
    offsets = _fill(log, 0, 10)
    first = open_tail()
    assert len(_drain(first)) == 10  # delivered all ...
    first.ack(offsets[3])  # ... but the last checkpoint covers only c0..c3; then a crash
    _fill(log, 10, 2)
    again = open_tail(after=offsets[3])
    assert _ids(_drain(again)) == [f"c{i}" for i in range(4, 12)]


def test_checkpoint_ahead_of_the_acks(log: EventLog, open_tail: OpenTail) -> None:
    """Saved, crashed before ack: the checkpoint decides, the tail skips what it covers."""
    offsets = _fill(log, 0, 10)
    first = open_tail()
    _drain(first)
    again = open_tail(after=offsets[6])
    assert _ids(_drain(again)) == ["c7", "c8", "c9"]


def test_checkpoint_behind_the_acks_still_replays_from_it(
    log: EventLog, open_tail: OpenTail
) -> None:
    """An older checkpoint (restored from a backup) must not lose what was acknowledged since."""
    offsets = _fill(log, 0, 10)
    first = open_tail()
    _drain(first)
    first.ack(offsets[7])
    again = open_tail(after=offsets[2])
    assert _ids(_drain(again)) == [f"c{i}" for i in range(3, 10)]


def test_restart_under_another_consumer_name(log: EventLog, open_tail: OpenTail) -> None:
    offsets = _fill(log, 0, 6)
    _drain(open_tail(consumer="a"))
    again = open_tail(after=offsets[1], consumer="b")
    assert _ids(_drain(again)) == ["c2", "c3", "c4", "c5"]


def test_fresh_start_reads_everything_even_after_earlier_runs(
    log: EventLog, open_tail: OpenTail
) -> None:
    offsets = _fill(log, 0, 5)
    first = open_tail()
    _drain(first)
    first.ack(offsets[-1])
    again = open_tail(after=None)  # the checkpoint was deleted: start over
    assert _ids(_drain(again)) == [f"c{i}" for i in range(5)]


def test_depth_counts_entries_past_the_position(log: EventLog, open_tail: OpenTail) -> None:
    _fill(log, 0, 10)
    tail = open_tail()
    tail.poll(4, 0.0)
    assert tail.depth() == 6
    _drain(tail)
    assert tail.depth() == 0


# ---------------------------------------------------------------- implementation details
def test_redis_ack_empties_the_pending_list(redis_prefix: str) -> None:
    log = RedisStreamEventLog(REDIS_URL, prefix=redis_prefix)
    offsets = _fill(log, 0, 10)
    tail = RedisGroupTail(REDIS_URL, log.stream)
    _drain(tail)
    assert tail.pending() == 10
    tail.ack(offsets[5])
    assert tail.pending() == 4
    tail.ack(offsets[-1])
    assert tail.pending() == 0
    tail.close()
    log.close()


def test_polling_tail_waits_with_the_injected_sleep(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "events.sqlite")
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s
        if len(slept) == 3:
            log.append(events([click(1)]))

    tail = PollingTail(log, interval_s=0.01, sleep=sleep, monotonic=lambda: now[0])
    assert _ids(tail.poll(10, 1.0)) == ["c1"]
    assert slept == [0.01, 0.01, 0.01]
    slept.clear()
    assert tail.poll(10, 0.025) == []
    assert slept == pytest.approx([0.01, 0.01, 0.005])
    log.close()
