"""A generated world on disk: deterministic, time-ordered, valid, self-consistent, both formats."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from feedstack.core.errors import InputError
from feedstack.core.events import (
    Click,
    Dwell,
    Event,
    Hide,
    Impression,
    UserProfile,
    event_to_json,
    parse_event,
    parse_event_json,
)
from feedstack.storage.arrow_events import EVENT_SCHEMA, row_to_event_dict
from feedstack.world import WorldConfig, load_world_config, write_world

CONFIG = WorldConfig(users=1500, articles=300, days=0.5, seed=11)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("world")
    return out, write_world(CONFIG, out)


@pytest.fixture(scope="module")
def lines(generated: tuple[Path, dict[str, Any]]) -> list[bytes]:
    return (generated[0] / "events.jsonl").read_bytes().splitlines()


@pytest.fixture(scope="module")
def events(lines: list[bytes]) -> list[Event]:
    return [parse_event_json(line) for line in lines]  # every line validates


def test_same_seed_gives_identical_bytes(tmp_path: Path, generated: tuple[Path, Any]) -> None:
    write_world(CONFIG, tmp_path / "again")
    assert (tmp_path / "again" / "events.jsonl").read_bytes() == (
        generated[0] / "events.jsonl"
    ).read_bytes()
    write_world(CONFIG.model_copy(update={"seed": 12}), tmp_path / "other")
    assert (tmp_path / "other" / "events.jsonl").read_bytes() != (
        generated[0] / "events.jsonl"
    ).read_bytes()


def test_lines_are_canonical_json(lines: list[bytes]) -> None:
    """The fast encoder writes exactly what event_to_json would."""
    for line in lines[:: max(1, len(lines) // 2000)]:
        assert event_to_json(parse_event_json(line)) == line


def test_time_ordered_unique_ids_and_in_the_window(events: list[Event]) -> None:
    times = [e.event_time for e in events]
    assert times == sorted(times)
    assert times[0] == CONFIG.start
    assert times[-1] < CONFIG.end + (CONFIG.end - CONFIG.start)  # reactions may spill a little
    assert len({e.event_id for e in events}) == len(events)
    assert events[0].event_id == "w11-0"


def test_summary_counts_match_the_file(
    generated: tuple[Path, dict[str, Any]], events: list[Event]
) -> None:
    out, summary = generated
    counts = Counter(e.type for e in events)
    assert summary["counts"] == {k: counts.get(k, 0) for k in summary["counts"]}
    assert summary["events"] == len(events)
    assert counts["user_profile"] == CONFIG.users and counts["article_published"] == 300
    assert 0 < summary["ctr"] < 1 and summary["events_per_user_day"] > 1
    assert counts["hide"] > 0
    assert not list(out.glob("*.tmp"))
    doc = orjson.loads((out / "world.json").read_bytes())
    assert doc["summary"]["counts"] == summary["counts"]
    assert load_world_config(out) == CONFIG  # the world can be rebuilt from world.json


def test_reactions_refer_to_an_earlier_impression_of_the_same_request(
    events: list[Event],
) -> None:
    shown: dict[str, Impression] = {}
    signed_up: set[str] = set()
    for e in events:
        if isinstance(e, UserProfile):
            signed_up.add(e.user_id)
        elif isinstance(e, Impression):
            assert e.user_id in signed_up
            assert 1 <= len(e.item_ids) <= CONFIG.clicks.k
            assert len(set(e.item_ids)) == len(e.item_ids)
            shown[e.request_id] = e
        elif isinstance(e, Click | Dwell | Hide):
            imp = shown[e.request_id or ""]
            assert imp.user_id == e.user_id and e.event_time > imp.event_time
            assert e.article_id in imp.item_ids
            if isinstance(e, Click):
                assert imp.item_ids[e.position or 0] == e.article_id
    counts = Counter(e.type for e in events)
    assert counts["click"] == counts["dwell"]
    assert counts["click"] <= counts["impression"] * CONFIG.clicks.k


def test_articles_are_announced_before_they_are_shown(events: list[Event]) -> None:
    known: set[str] = set()
    for e in events:
        if e.type == "article_published":
            known.add(e.article_id)
            assert e.publish_time <= e.event_time
        elif isinstance(e, Impression):
            assert known.issuperset(e.item_ids)


def test_position_bias_is_visible(generated: tuple[Path, dict[str, Any]]) -> None:
    ctr = generated[1]["ctr_by_position"]
    assert ctr[0] > 2 * ctr[5]


def test_parquet_has_the_same_events(tmp_path: Path, events: list[Event]) -> None:
    summary = write_world(CONFIG, tmp_path, "parquet")
    table = pq.read_table(summary["path"])
    assert table.schema.equals(EVENT_SCHEMA)
    rows = [parse_event(row_to_event_dict(r)) for r in table.to_pylist()]
    assert rows == events


def test_bad_format_and_future_world_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--format"):
        write_world(CONFIG, tmp_path, "xml")
    with pytest.raises(InputError, match=r"must be in the past"):
        write_world(CONFIG, tmp_path, now=CONFIG.start)
    assert not list(tmp_path.iterdir())


def test_what_existed_before_the_start_is_announced_at_the_start(events: list[Event]) -> None:
    """Earlier signups and backlog articles appear at the start with their true times."""
    profiles = [e for e in events if isinstance(e, UserProfile)]
    early = [p for p in profiles if p.signup_time < CONFIG.start]
    assert early and all(p.event_time == CONFIG.start for p in early)
    late = [p for p in profiles if p.signup_time >= CONFIG.start]
    assert late and all(p.event_time == p.signup_time for p in late)
    backlog = [e for e in events if e.type == "article_published" and e.event_time == CONFIG.start]
    assert backlog and all(e.publish_time < CONFIG.start for e in backlog)  # type: ignore[union-attr]
