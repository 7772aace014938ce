"""Bad input, one test each: the rejection names the field and the reason."""

from __future__ import annotations

import orjson
import pytest

from feedstack.core.clock import FixedClock
from feedstack.core.events import Click, Impression
from feedstack.core.spec import Ingest
from feedstack.ingest.records import RawRecord
from feedstack.ingest.validate import Validator
from feedstack.storage.deadletter import Rejection
from tests.conftest import NOW
from tests.factories import article, click, impression


@pytest.fixture
def v() -> Validator:
    return Validator(Ingest(max_text_chars=50, max_title_chars=20), FixedClock(NOW))


def rec(payload: bytes | dict[str, object]) -> RawRecord:
    return RawRecord("in", 1, payload)


def rejected(v: Validator, payload: bytes | dict[str, object]) -> Rejection:
    out = v.check(rec(payload))
    assert isinstance(out, Rejection), out
    return out


def test_valid_json_is_kept_as_received(v: Validator) -> None:
    raw = orjson.dumps(impression(1))
    events, payloads, rejections = v.check_batch([rec(raw)])
    assert isinstance(events[0], Impression)
    assert payloads == [raw]
    assert rejections == []


def test_malformed_json(v: Validator) -> None:
    r = rejected(v, b'{"type": "click", "event_id": ')
    assert (r.field, r.reason.startswith("invalid JSON")) == ("<record>", True)
    assert r.raw == '{"type": "click", "event_id": '


def test_missing_field(v: Validator) -> None:
    d = click(1)
    del d["user_id"]
    r = rejected(v, orjson.dumps(d))
    assert (r.field, r.reason) == ("user_id", "required field missing")


def test_extra_field(v: Validator) -> None:
    r = rejected(v, orjson.dumps({**click(1), "color": "red"}))
    assert (r.field, r.reason) == ("color", "unknown field")


@pytest.mark.parametrize(
    ("field", "value"),
    [("dwell_ms", "12"), ("dwell_ms", -3), ("user_id", 7), ("event_time", "yesterday")],
)
def test_wrong_types(v: Validator, field: str, value: object) -> None:
    d: dict[str, object] = {
        "type": "dwell",
        "event_id": "d1",
        "event_time": "2026-01-01T00:00:00Z",
        "user_id": "u1",
        "article_id": "a1",
        "dwell_ms": 10,
    }
    d[field] = value
    r = rejected(v, orjson.dumps(d))
    assert r.field == field
    assert repr(value)[:10] in r.reason


def test_naive_time_is_rejected(v: Validator) -> None:
    r = rejected(v, orjson.dumps({**click(1), "event_time": "2026-01-01T00:00:00"}))
    assert r.field == "event_time"
    assert "timezone" in r.reason


def test_unknown_event_type(v: Validator) -> None:
    r = rejected(v, orjson.dumps({**click(1), "type": "purchase"}))
    assert (r.field, r.reason) == ("type", "unknown event type 'purchase'")


def test_missing_type(v: Validator) -> None:
    d = click(1)
    del d["type"]
    assert rejected(v, orjson.dumps(d)).field == "type"


def test_not_an_object(v: Validator) -> None:
    assert rejected(v, b"[1, 2]").field == "<record>"


def test_time_far_in_the_future(v: Validator) -> None:
    r = rejected(v, orjson.dumps({**click(1), "event_time": "2027-06-01T00:00:00Z"}))
    assert r.field == "event_time"
    assert "in the future" in r.reason
    assert "max_future_skew_s" in r.reason


def test_small_clock_skew_is_allowed(v: Validator) -> None:
    ok = v.check(rec(orjson.dumps({**click(1), "event_time": "2026-06-01T00:01:00Z"})))
    assert isinstance(ok, Click)


def test_oversized_text_and_title(v: Validator) -> None:
    r = rejected(v, orjson.dumps(article(1, text="x" * 51)))
    assert (r.field, "max_text_chars=50" in r.reason) == ("text", True)
    r = rejected(v, orjson.dumps(article(1, title="t" * 21)))
    assert r.field == "title"


def test_oversized_line() -> None:
    v = Validator(Ingest(max_line_bytes=100), FixedClock(NOW))
    r = rejected(v, orjson.dumps(article(1, text="x" * 200)))
    assert r.field == "<record>"
    assert "max_line_bytes=100" in r.reason


def test_too_many_items() -> None:
    v = Validator(Ingest(max_items_per_impression=3), FixedClock(NOW))
    assert rejected(v, orjson.dumps(impression(1))).field == "item_ids"


def test_invalid_utf8(v: Validator) -> None:
    r = rejected(v, b'{"type": "click", "user_id": "\xff\xfe"}')
    assert r.field == "<record>"
    assert "\\xff" in r.raw


def test_reader_error_passes_through(v: Validator) -> None:
    r = v.check(RawRecord("in.csv", 9, None, "a,b", ("<record>", "2 cells, header has 3")))
    assert isinstance(r, Rejection)
    assert (r.line, r.reason, r.raw) == (9, "2 cells, header has 3", "a,b")


def test_mappings_are_validated_in_lax_mode_and_serialized(v: Validator) -> None:
    d = {**click(1), "position": "3"}  # CSV gives strings
    events, payloads, _ = v.check_batch([rec(d)])
    assert events[0].position == 3  # type: ignore[union-attr]
    assert orjson.loads(payloads[0])["position"] == 3


def test_batch_keeps_valid_events_around_bad_ones(v: Validator) -> None:
    batch = [rec(orjson.dumps(click(1))), rec(b"{oops"), rec(orjson.dumps(click(2)))]
    events, _, rejections = v.check_batch(batch)
    assert [e.event_id for e in events] == ["c1", "c2"]
    assert len(rejections) == 1


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("article_id", "a\x00b", "U+0000 (NUL)"),
        ("user_id", "u\n1", "newline"),
        ("user_id", "u\x85", "U+0085"),
        ("article_id", "a\u2028", "U+2028"),
        ("event_id", "e" * 129, "at most 128"),
    ],
)
def test_ids_printable_and_bounded(v: Validator, field: str, value: str, why: str) -> None:
    """Regression: an article id holding NUL was accepted and later stopped `candidates build`
    for every user. Every path (JSON strict, mappings from CSV/Parquet) refuses it, naming it."""
    d = {**click(1), field: value}
    for payload in (orjson.dumps(d), d):
        r = v.check(rec(payload))
        assert isinstance(r, Rejection), payload
        assert r.field == field and why in r.reason


def test_impression_item_ids_and_text(v: Validator) -> None:
    d = {**impression(1), "item_ids": ["a1", "a\x002"]}
    r = rejected(v, orjson.dumps(d))
    assert r.field == "item_ids.1" and "NUL" in r.reason
    ok = v.check(rec(orjson.dumps(article(2, text="line one\nline two\ttabbed"))))
    assert not isinstance(ok, Rejection)  # free text may hold newlines
    r = rejected(v, orjson.dumps(article(3, title="t\x00")))
    assert r.field == "title" and "NUL" in r.reason


def test_deep_nesting_refused_before_parsing(v: Validator) -> None:
    """Regression: an event nested 1,000 levels deep answered 500 (the serializer recursed)."""
    deep = b'{"type":"click","x":' + b"[" * 1000 + b"]" * 1000 + b"}"
    r = rejected(v, deep)
    assert r.field == "<record>" and "max_json_depth" in r.reason and "1001 levels" in r.reason
    # Brackets inside strings are text, not nesting.
    ok = v.check(rec(orjson.dumps(article(4, title="[" * 10, text="{" * 40))))
    assert not isinstance(ok, Rejection)


def test_json_depth_known_answers() -> None:
    from feedstack.ingest.limits import depth_problem, json_depth

    assert json_depth(b"{}") == 1 and json_depth(b'[{"a":[1]}]') == 3
    assert json_depth(b'{"a":"[[[\\"[["}') == 1  # escaped quote inside a string
    assert json_depth(b"") == 0 and json_depth(b"]]]") == 0
    assert depth_problem(b"[[[]]]", 3) is None and depth_problem(b"[[[[]]]]", 3) is not None
