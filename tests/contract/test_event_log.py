"""One contract suite for the event log, run against every backend (embedded SQLite, Redis)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from feedstack.core.errors import ConfigError
from feedstack.core.events import event_to_json
from feedstack.storage.eventlog import EventLog, iter_log, open_event_log
from tests.conftest import REDIS_URL
from tests.factories import click, events, impression, mixed


@pytest.fixture(params=["sqlite", "redis"])
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return "sqlite://events.sqlite"
    prefix = request.getfixturevalue("redis_prefix")
    return f"{REDIS_URL}?prefix={prefix}"


@pytest.fixture
def log(log_url: str, tmp_path: Path) -> Iterator[EventLog]:
    lg = open_event_log(log_url, tmp_path)
    yield lg
    lg.close()


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
    match = r"backends.event_log = 'kafka://x'.*valid: sqlite, redis"
    with pytest.raises(ConfigError, match=match):
        open_event_log("kafka://x", tmp_path)


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
