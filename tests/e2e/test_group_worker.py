"""Feature workers in a Kafka consumer group (a real tansu broker): two members split the
partitions and end with the same online features as one pass over the log (replay = stream);
a member killed mid-stream hands its partitions on and the results stay exact."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from feedstack.bench.freshness import SyntheticStream
from feedstack.core.events import EVENT_ADAPTER
from feedstack.features.backfill import log_batches, run_backfill
from feedstack.features.definitions import AFFINITY_TAU_S, ARTICLE_TAUS, WINDOWS_S
from feedstack.features.group_worker import GroupWorker
from feedstack.features.sink import MemorySink
from feedstack.features.worker import WorkerConfig
from feedstack.storage.kafka_log import KafkaEventLog

pytestmark = pytest.mark.slow
PARTITIONS = 4
T0 = 1_780_000_000.0  # event times: a fixed past hour, 25 minutes of it


class LockedSink(MemorySink):
    """One MemorySink that both members write to (a store shared by the workers)."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def write_online(self, rows: Any) -> None:
        with self.lock:
            super().write_online(rows)

    def write_offline(self, rows: Any) -> None:
        with self.lock:
            super().write_offline(rows)


def _append_world(log: KafkaEventLog, n: int = 6_000) -> None:
    stream = SyntheticStream(users=60, articles=30, seed=5, items=5)
    payloads = [orjson.dumps(e) for e in stream.take(n, T0, 1500 / n, late_s=0.0)]
    log.append([EVENT_ADAPTER.validate_json(p) for p in payloads], payloads)


@pytest.fixture
def kafka_log(kafka_broker: Any, kafka_topic: str) -> Iterator[KafkaEventLog]:
    log = KafkaEventLog(kafka_broker.url(kafka_topic, PARTITIONS))
    yield log
    log.close()
    log.drop()


def _one_pass(log: KafkaEventLog) -> MemorySink:
    sink = MemorySink()
    run_backfill(log_batches(log, None, 1_000), sink)
    return sink


def _config(name: str, log: KafkaEventLog) -> WorkerConfig:
    # One group per topic: the session's broker must not mix members of earlier tests' groups.
    group = f"features-{log.topic}"
    return WorkerConfig(max_batch=500, max_wait_s=0.05, consumer=name, group=group)


def _members_split(workers: list[GroupWorker], timeout_s: float = 30.0) -> None:
    """Poll every member until the group has settled with each holding some partitions."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for w in workers:
            w.step()
        held = [len(w.tail.assigned) for w in workers]
        if all(held) and sum(held) == PARTITIONS:
            return
    raise AssertionError(f"the group did not split: {[w.tail.assigned for w in workers]}")


# Decayed features and their time constants (s): rows as of different times compare after both
# are brought to the same time, as every reader does (definitions.decay).
TAUS = {
    "user_features": {"impressions_24h": WINDOWS_S["24h"], "clicks_24h": WINDOWS_S["24h"]},
    "article_stats": {
        name: tau
        for name, tau in zip(
            [c for c in ("impressions_5m", "clicks_5m", "impressions_1h", "clicks_1h")]
            + ["impressions_24h", "clicks_24h"],
            ARTICLE_TAUS,
            strict=True,
        )
    },
    "topic_stats": {"impressions_1h": WINDOWS_S["1h"], "clicks_1h": WINDOWS_S["1h"]},
}


def _same_row(view: str, got: dict[str, Any], want: dict[str, Any]) -> None:
    at = max(got["as_of_s"], want["as_of_s"])
    for col, value in want.items():
        if col in ("key", "as_of_s"):
            continue
        g = got[col]
        if col in TAUS.get(view, {}):
            tau = TAUS[view][col]
            w = value * math.exp((want["as_of_s"] - at) / tau)
            g = g * math.exp((got["as_of_s"] - at) / tau)
            assert g == pytest.approx(w, rel=1e-5, abs=1e-6), (view, want["key"], col)
        elif col in ("affinity_scores", "trending_scores"):
            continue  # checked with their item lists below
        elif col == "affinity_topics":
            tau = AFFINITY_TAU_S
            gs = [s * math.exp((got["as_of_s"] - at) / tau) for s in got["affinity_scores"]]
            ws = [s * math.exp((want["as_of_s"] - at) / tau) for s in want["affinity_scores"]]
            assert dict(zip(g, gs, strict=True)) == pytest.approx(
                dict(zip(value, ws, strict=True)), rel=1e-5
            )
        elif col == "trending_items":
            gd = dict(zip(g, got["trending_scores"], strict=True))
            wd = dict(zip(value, want["trending_scores"], strict=True))
            assert gd == pytest.approx(wd, rel=1e-5), (view, want["key"])
        else:
            assert g == value, (view, want["key"], col)


def _same_online(got: MemorySink, want: MemorySink) -> None:
    assert set(got.online) == set(want.online)
    for view, table in want.online.items():
        assert set(got.online[view]) == set(table), view
        for key, row in table.items():
            _same_row(view, got.online[view][key], row)


def test_two_workers_in_a_group_equal_one_pass(kafka_log: KafkaEventLog, tmp_path: Path) -> None:
    sink = LockedSink()
    folder = tmp_path / "checkpoints"
    workers = [
        GroupWorker(kafka_log, sink, folder, _config(f"w{i}", kafka_log)) for i in range(2)
    ]  # the second join rebalances the first: both poll until the group settles
    _members_split(workers)
    _append_world(kafka_log)
    reports: dict[int, Any] = {}

    def run(i: int) -> None:
        reports[i] = workers[i].run(once=True)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    for w in workers:
        w.close()
    assert all(r.events > 0 for r in reports.values())  # both did a share of the work
    assert sum(r.events for r in reports.values()) >= 6_000
    _same_online(sink, _one_pass(kafka_log))


def test_a_crashed_member_replays_from_its_checkpoints_and_duplicates_drop(
    kafka_log: KafkaEventLog, tmp_path: Path
) -> None:
    """Kill a member after it applied more than its checkpoints cover, with a duplicate in the
    topic (two appenders raced on an id): the next member resumes every partition from its own
    checkpoint, drops the duplicate, and the online features equal one pass."""
    _append_world(kafka_log, 3_000)
    racer = KafkaEventLog(kafka_log.url, index_refresh_s=3_600)
    racer.count()  # its index is built now and goes stale
    click = {
        "type": "click",
        "event_id": "raced-1",
        "event_time": "2026-05-28T21:01:50+00:00",
        "user_id": "u7",
        "article_id": "a3",
    }
    payload = orjson.dumps(click)
    for lg in (kafka_log, racer):
        lg.append([EVENT_ADAPTER.validate_json(payload)], [payload])
    racer.close()
    stored = [r for p in range(PARTITIONS) for r in kafka_log.partition_records(p)]
    assert sum(r.event_id == "raced-1" for r in stored) == 2

    sink, folder = LockedSink(), tmp_path / "checkpoints"
    config = WorkerConfig(max_batch=200, max_wait_s=0.05, consumer="a", checkpoint_every_events=700)
    first = GroupWorker(kafka_log, sink, folder, config)
    while first.report.events < 2_000:
        first.step()
        for task in list(first.tasks.values()):
            task.maybe_checkpoint()
    covered = sum(
        int(t.checkpointed_offset or -1) + 1 for t in first.tasks.values()
    )  # records the checkpoints cover
    assert covered < first.report.events  # it dies with work the checkpoints do not cover
    first.tail.close()  # the process vanishes: no last checkpoint on the way out

    again = GroupWorker(kafka_log, sink, folder, _config("b", kafka_log))
    again.run(once=True)
    again.close()
    _same_online(sink, _one_pass(kafka_log))
