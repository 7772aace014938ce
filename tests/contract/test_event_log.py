"""One contract suite for the event log, run against every backend (embedded SQLite, Redis, and
Kafka with one and with three partitions on a real tansu broker).

Where Kafka keeps a weaker promise, the suite says so in a test of its own below rather than
skipping: ``append`` is not atomic per call on Kafka (no transaction this broker honours), and
an id two appenders race on can reach the topic twice (readers drop it; tested)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from feedstack.core.errors import ConfigError
from feedstack.core.events import event_to_json
from feedstack.storage.eventlog import EventLog, iter_log, open_event_log
from feedstack.storage.kafka_log import KafkaEventLog
from feedstack.storage.memory_log import MemoryEventLog, drop
from tests.conftest import REDIS_URL
from tests.factories import article, click, events, impression, mixed


@pytest.fixture(params=["sqlite", "memory", "redis", "kafka-1", "kafka-3"])
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return "sqlite://events.sqlite"
    if request.param == "memory":
        return f"memory://{tmp_path.name}"
    if request.param.startswith("kafka"):
        broker = request.getfixturevalue("kafka_broker")
        topic = request.getfixturevalue("kafka_topic")
        return str(broker.url(topic, int(request.param.split("-")[1])))
    prefix = request.getfixturevalue("redis_prefix")
    return f"{REDIS_URL}?prefix={prefix}"


@pytest.fixture
def log(log_url: str, tmp_path: Path) -> Iterator[EventLog]:
    lg = open_event_log(log_url, tmp_path)
    yield lg
    lg.close()
    if isinstance(lg, KafkaEventLog):
        lg.drop()
    if isinstance(lg, MemoryEventLog):
        drop(lg.name)


def test_append_then_read_in_order(log: EventLog) -> None:
    evs = events(mixed(30))
    res = log.append(evs)
    assert (res.accepted, res.duplicates) == (30, 0)
    got = [r.event for r in iter_log(log, batch=7)]
    assert got == evs
    assert log.count() == 30


def test_reappend_is_a_no_op(log: EventLog) -> None:
    evs = events(mixed(10))
    log.append(evs)
    res = log.append(evs)
    assert (res.accepted, res.duplicates) == (0, 10)
    assert log.count() == 10


def test_duplicates_inside_one_batch_first_wins(log: EventLog) -> None:
    first = click(1, article="a1")
    again = {**click(1, article="a2")}  # same event_id, other content
    res = log.append(events([first, again, click(2)]))
    assert (res.accepted, res.duplicates) == (2, 1)
    assert [r.event.article_id for r in iter_log(log)] == ["a1", "a1"]  # type: ignore[union-attr]


def test_read_after_offset_resumes(log: EventLog) -> None:
    log.append(events(mixed(12)))
    head = log.read(None, 5)
    rest = log.read(head[-1].offset, 100)
    assert [r.event.event_id for r in head + rest] == [e["event_id"] for e in mixed(12)]
    assert log.read(rest[-1].offset, 10) == []


def test_offsets_stable_across_reopen(log: EventLog, log_url: str, tmp_path: Path) -> None:
    log.append(events(mixed(6)))
    before = [r.offset for r in log.read()]
    again = open_event_log(log_url, tmp_path)
    assert [r.offset for r in again.read()] == before
    again.close()


def test_given_payloads_are_stored_as_is(log: EventLog) -> None:
    evs = events([impression(1)])
    raw = b'{ "type": "impression", "event_id": "i1", "event_time": "2026-01-01T00:00:01+00:00",'
    raw += b' "request_id": "r1", "user_id": "u1", "item_ids": ["a0","a1","a2","a3","a4"],'
    raw += b' "model_version": "m0" }'
    log.append(evs, [raw])
    [(_, stored)] = log.read_raw()
    assert stored == raw
    assert log.read()[0].event == evs[0]


def test_read_raw_equals_canonical_when_no_payload_given(log: EventLog) -> None:
    evs = events(mixed(4))
    log.append(evs)
    assert [p for _, p in log.read_raw()] == [event_to_json(e) for e in evs]


def test_empty_append(log: EventLog) -> None:
    res = log.append([])
    assert (res.accepted, res.duplicates) == (0, 0)
    assert log.read() == []


def test_unknown_scheme_lists_valid_ones(tmp_path: Path) -> None:
    match = r"backends.event_log = 'nats://x'.*valid: sqlite, redis, kafka"
    with pytest.raises(ConfigError, match=match):
        open_event_log("nats://x", tmp_path)


def test_append_many_equals_appends_one_after_another(log: EventLog) -> None:
    """A group commit (several API posts and impressions in one transaction) answers each batch
    as if it had been appended alone, in order: a repeat across batches is the later one's."""
    first, second, third = mixed(4), [click(90), *mixed(2)], [click(91)]
    res = log.append_many([(events(first), None), (events(second), None), ([], None),
                           (events(third), None)])  # fmt: skip
    assert [(r.accepted, r.duplicates) for r in res] == [(4, 0), (1, 2), (0, 0), (1, 0)]
    assert [r.event.event_id for r in iter_log(log)] == [
        *(e["event_id"] for e in first),
        "c90",
        "c91",
    ]
    assert log.append_many([]) == []


# ------------------------------------------------------------------- Kafka's own promises
@pytest.fixture
def kafka_url(kafka_broker: Any, kafka_topic: str) -> Iterator[str]:
    url = str(kafka_broker.url(kafka_topic, 3))
    yield url
    KafkaEventLog(url).drop()


def test_kafka_keys_users_and_copies_articles_to_every_partition(kafka_url: str) -> None:
    log = KafkaEventLog(kafka_url)
    log.append(events([article(1), *(click(i, user=f"u{i % 4}") for i in range(12))]))
    where: dict[str, set[int]] = {}
    copies = 0
    for p in range(3):
        for r in log.partition_records(p):
            ev = orjson.loads(r.payload)
            copies += r.copy
            where.setdefault(ev.get("user_id") or ev["article_id"], set()).add(p)
    assert where["a1"] == {0, 1, 2} and copies == 2  # a copy in every partition but 0
    assert all(len(where[f"u{i}"]) == 1 for i in range(4))  # a user stays in one partition
    assert [r.event.event_id for r in iter_log(log)].count("p1") == 1  # readers skip copies
    assert log.count() == 13
    log.close()


def test_kafka_dedupes_across_a_restart_of_the_appender(kafka_url: str) -> None:
    first = KafkaEventLog(kafka_url)
    first.append(events(mixed(20)))
    first.close()
    again = KafkaEventLog(kafka_url)  # a new process: its index is rebuilt from the topic
    res = again.append(events(mixed(20)))
    assert (res.accepted, res.duplicates) == (0, 20)
    assert again.count() == 20
    again.close()


def test_kafka_readers_drop_a_duplicate_two_appenders_raced_on(kafka_url: str) -> None:
    """Kafka has no conditional write: two appenders whose indexes have not seen each other's
    append can both write an id. Readers return it once; the appender counts it once."""
    a = KafkaEventLog(kafka_url, index_refresh_s=3600)
    b = KafkaEventLog(kafka_url, index_refresh_s=3600)
    a.append(events([click(1)]))  # both indexes are built now
    b.append(events([click(2)]))
    a.append(events([click(3, user="u2")]))
    b.append(events([click(3, user="u2")]))  # b's index has not seen a's c3
    stored = [r for p in range(3) for r in a.partition_records(p) if r.event_id == "c3"]
    assert len(stored) == 2  # the race let it in twice ...
    reader = KafkaEventLog(kafka_url)
    assert [r.event.event_id for r in iter_log(reader)] == ["c1", "c2", "c3"]  # ... read once
    assert reader.count() == 3
    for lg in (a, b, reader):
        lg.close()


def test_kafka_topic_keeps_its_partition_count(kafka_url: str) -> None:
    KafkaEventLog(kafka_url).close()
    with pytest.raises(ConfigError, match="has 3 partitions, the URL says 2"):
        KafkaEventLog(kafka_url.replace("partitions=3", "partitions=2"))


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("kafka://127.0.0.1:9092", "missing topic"),
        ("kafka://127.0.0.1:9092/t?partitions=0", "partitions='0' must be an integer"),
        ("kafka://127.0.0.1:9092/t?partitions=x", "partitions='x'"),
        ("kafka://127.0.0.1:9092/t?parts=2", "unknown option"),
    ],
)
def test_kafka_url_errors_name_the_key_and_value(url: str, match: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=match):
        open_event_log(url, tmp_path)
