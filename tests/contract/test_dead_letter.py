"""One contract suite for the dead-letter store (file, Redis): round trip, idempotence, two
writers, unknown scheme, unavailable backend, closed store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from feedstack.core.errors import BackendUnavailable, ConfigError
from feedstack.storage.deadletter import DeadLetterStore, Rejection, open_dead_letter
from tests.conftest import REDIS_URL

R1 = Rejection("in.jsonl", 3, "user_id", "required field missing", '{"type":"click"}')
R2 = Rejection("in.jsonl", 4, "<record>", "invalid JSON", '{"type": \\xff')


R3 = Rejection("api", 1, "event_id", "required field missing", '{"type":"hide"}')


@pytest.fixture(params=["file", "redis"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "file":
        return "file://dl"
    return f"{REDIS_URL}?prefix={request.getfixturevalue('redis_prefix')}"


@pytest.fixture
def store(url: str, tmp_path: Path) -> Iterator[DeadLetterStore]:
    s = open_dead_letter(url, tmp_path)
    yield s
    s.close()


def test_write_read_round_trip(store: DeadLetterStore) -> None:
    assert store.write([R1, R2]) == 2
    assert store.read() == [R1, R2]


def test_rewriting_the_same_rejections_adds_nothing(store: DeadLetterStore) -> None:
    store.write([R1])
    assert store.write([R1, R2]) == 1
    assert store.read() == [R1, R2]


def test_two_writers_on_one_store_store_an_entry_once(url: str, tmp_path: Path) -> None:
    """Two processes' stores (serving workers): B has read the store before A wrote R1, then
    rejects R1 too; R1 must still be stored once (a writer catches up on others' entries)."""
    a, b = open_dead_letter(url, tmp_path), open_dead_letter(url, tmp_path)
    try:
        assert b.write([R3]) == 1
        assert a.write([R1]) == 1
        assert b.write([R1, R2]) == 1
        assert a.write([R2, R3]) == 0
        assert sorted(r.line for r in a.read()) == [1, 3, 4]
    finally:
        a.close()
        b.close()


def test_file_store_drops_a_torn_last_line(tmp_path: Path) -> None:
    s = open_dead_letter("file://dl", tmp_path)
    s.write([R1])
    path = tmp_path / "dl" / "dead_letter.jsonl"
    with path.open("ab") as f:
        f.write(b'{"key": "abc", "sour')  # a crash mid-write: never acknowledged
    fresh = open_dead_letter("file://dl", tmp_path)
    assert fresh.write([R2]) == 1
    assert fresh.read() == [R1, R2]


def test_unknown_scheme_lists_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"backends.dead_letter = 's3://x'.*valid: file, redis"):
        open_dead_letter("s3://x", tmp_path)


@pytest.fixture(params=["file", "redis"])
def unavailable_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "file":
        (tmp_path / "not-a-dir").write_text("a file where the store's folder should be")
        return "file://not-a-dir/dl"
    return "redis://127.0.0.1:1/0?prefix=unreachable"  # nothing listens on port 1


def test_an_unavailable_store_refuses_the_write_and_says_where(
    unavailable_url: str, tmp_path: Path
) -> None:
    """Opening never fails (a server whose dead-letter store is down still serves feeds); a
    write raises BackendUnavailable, so the batch is not acknowledged."""
    s = open_dead_letter(unavailable_url, tmp_path)
    try:
        with pytest.raises(BackendUnavailable, match="dead-letter store"):
            s.write([R1])
    finally:
        s.close()


def test_a_closed_store_refuses_writes_and_reads(store: DeadLetterStore) -> None:
    store.write([R1])
    store.close()
    with pytest.raises(BackendUnavailable, match="closed"):
        store.write([R2])
    with pytest.raises(BackendUnavailable, match="closed"):
        store.read()
