"""The serving process's event writer: posts and impressions waiting together are stored in one
group commit, each post answered with its own counts once durable; a backend fault fails every
waiting post (nothing acknowledged unstored) and drops the impressions, counted."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from feedstack.core.clock import FixedClock
from feedstack.core.errors import BackendUnavailable
from feedstack.core.spec import Ingest
from feedstack.ingest.pipeline import Ingestor
from feedstack.ingest.records import RawRecord
from feedstack.ingest.validate import Validator
from feedstack.serve.impressions import impression_payload
from feedstack.serve.intake import EventWriter
from feedstack.storage.deadletter import FileDeadLetter
from feedstack.storage.sqlite_log import SqliteEventLog
from tests.factories import T0, click

NOW = datetime(2026, 1, 2, tzinfo=UTC)


def ingestor(tmp_path: Path) -> Ingestor:
    return Ingestor(
        SqliteEventLog(tmp_path / "events.sqlite"),
        FileDeadLetter(tmp_path / "dl"),
        Validator(Ingest(), FixedClock(NOW)),
    )


def post(*docs: dict[str, object]) -> list[RawRecord]:
    return [RawRecord("api", i + 1, orjson.dumps(d)) for i, d in enumerate(docs)]


def test_waiting_posts_and_impressions_share_one_commit(tmp_path: Path) -> None:
    ing = ingestor(tmp_path)
    logged: list[int] = []
    writer = EventWriter(ing, max_delay_s=10.0, on_logged=logged.append, start=False)
    a = writer.submit(post(click(1), click(2)))
    b = writer.submit(post(click(2), click(3), {"type": "click", "event_id": "bad"}))
    for n in range(3):
        writer.log(impression_payload(f"r{n}", "u1", ["a1", "a2"], "m1", T0))
    writer.start()  # everything is already waiting: one commit
    ra, rb = a.result(timeout=10), b.result(timeout=10)
    assert (ra.accepted, ra.duplicates, ra.rejected) == (2, 0, 0)
    assert (rb.accepted, rb.duplicates, rb.rejected) == (1, 1, 1)  # c2 is a's: b's duplicate
    assert rb.rejections[0].line == 3
    writer.close()
    assert writer.commits == 1 and logged == [3]
    ids = [orjson.loads(p)["event_id"] for _, p in ing.log.read_raw()]
    assert ids == ["c1", "c2", "c3", "imp-r0", "imp-r1", "imp-r2"]
    ing.close()


def test_close_stores_queued_impressions_then_refuses_posts(tmp_path: Path) -> None:
    ing = ingestor(tmp_path)
    writer = EventWriter(ing, max_delay_s=10.0)
    writer.log(impression_payload("r9", "u1", ["a1"], "m1", T0))
    writer.close()  # long before max_delay_s: close flushes
    assert [orjson.loads(p)["event_id"] for _, p in ing.log.read_raw()] == ["imp-r9"]
    with pytest.raises(BackendUnavailable):
        writer.submit(post(click(5))).result(timeout=5)
    ing.close()


def test_a_backend_fault_fails_the_posts_and_counts_dropped_impressions(tmp_path: Path) -> None:
    ing = ingestor(tmp_path)
    errors: list[Exception] = []
    writer = EventWriter(ing, max_delay_s=10.0, on_error=errors.append, start=False)
    ing.log.close()  # the log is gone
    fut = writer.submit(post(click(7)))
    writer.log(impression_payload("r1", "u1", ["a1"], "m1", T0))
    writer.start()
    with pytest.raises(BackendUnavailable):
        fut.result(timeout=10)
    writer.close()
    assert len(errors) == 1 and isinstance(errors[0], BackendUnavailable)
