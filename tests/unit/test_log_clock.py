"""The serving clock of a replayed log (``serve.clock: log``): it follows the log in steps, so
no single event can move it far, and the API refuses events far ahead of it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import yaml

from feedstack.core.clock import FixedClock
from feedstack.core.spec import load_spec
from feedstack.ingest.pipeline import Ingestor
from feedstack.ingest.records import RawRecord
from feedstack.serve.clock import LogClock
from feedstack.serve.service import build_service
from feedstack.world import WorldConfig
from tests.factories import world_project

HOUR = 3600.0


def test_one_event_moves_the_clock_at_most_one_step() -> None:
    c = LogClock(None, max_step_s=HOUR, fallback=FixedClock(datetime(2030, 1, 1, tzinfo=UTC)))
    assert c.now().year == 2030  # nothing read yet: the fallback
    c.advance([1000.0, 1060.0, 1030.0])
    assert c.now_s == 1060.0  # the newest, not the last; older events do not move it back
    c.advance([1060.0 + 300 * 86400])  # one event stamped months ahead
    assert c.now_s == 1060.0 + HOUR
    c.advance([1100.0, 1200.0])  # the real log goes on behind it: no move
    assert c.now_s == 1060.0 + HOUR


def test_a_real_gap_is_crossed_in_steps() -> None:
    c = LogClock(None, max_step_s=HOUR)
    c.advance([0.0])
    gap = [10 * HOUR + i for i in range(12)]  # a quiet night of 10 h, then events again
    c.advance(gap)
    assert c.now_s == gap[-1]  # ten steps, then exact again


def test_the_first_batch_does_not_let_its_first_event_set_the_clock() -> None:
    c = LogClock(None, max_step_s=HOUR)
    c.advance([1e9, 1000.0, 1010.0])  # a far-future event first in the log
    assert c.now_s == 1000.0 + HOUR


def _click(event_id: str, at: datetime, user: str, article: str) -> bytes:
    return orjson.dumps(
        {
            "type": "click",
            "event_id": event_id,
            "event_time": at.isoformat(),
            "user_id": user,
            "article_id": article,
        }
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = world_project(
        tmp_path_factory.mktemp("logclock"), WorldConfig(users=60, articles=60, days=1.0, seed=5)
    )
    path = project / "feedstack.yaml"
    doc = yaml.safe_load(path.read_text())
    doc.setdefault("serve", {})["clock"] = "log"
    path.write_text(yaml.safe_dump(doc))
    return project


def test_one_click_stamped_today_does_not_blank_every_feed(world: Path) -> None:
    """Regression. With ``serve.clock: log`` one valid click stamped with today's time, posted
    through the API, moved the clock months ahead: every feed went from 10 items to 0 (with
    ``fallback`` still null) and stayed so after a restart. Now the API refuses it (the field
    and the spec key named), and one that reached the log another way (``feedstack ingest``
    checks against the wall clock) moves the clock one step, not months."""
    today = datetime.now(UTC)
    svc = build_service(world, background=False)
    try:
        users = [f"u{i}" for i in range(20)]
        before = [len(svc.feed(u, 10).items) for u in users]
        assert min(before) == 10
        log_now = svc.clock.now()
        counts = svc.ingest([_click("poison-api", today, "u1", "a1")])
        assert (counts.accepted, counts.rejected) == (0, 1)
        assert counts.errors[0]["field"] == "event_time"
        assert "serve.log_clock_max_step_s" in counts.errors[0]["reason"]
        # A click one minute after the log's time is what the live traffic sends: accepted.
        ok = svc.ingest([_click("fine", log_now.replace(microsecond=0), "u1", "a1")])
        assert ok.accepted == 1
    finally:
        svc.close()
    # The same event through the batch path, which checks the wall clock: it is in the log.
    ing = Ingestor.from_spec(load_spec(world), world)
    assert ing.ingest_batch([RawRecord("cli", 1, _click("poison-cli", today, "u2", "a2"))]).accepted
    ing.close()
    restarted = build_service(world, background=False)  # replays the log, poison included
    try:
        assert isinstance(restarted.clock, LogClock)
        moved = restarted.clock.now().timestamp() - log_now.timestamp()
        assert 0 <= moved <= HOUR + 1
        after = [len(restarted.feed(u, 10).items) for u in users]
        assert min(after) == 10, after
    finally:
        restarted.close()
