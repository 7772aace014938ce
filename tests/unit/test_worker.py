"""The streaming worker, the backfill and the item cache: stream equals replay, to the bit.

The simulated day: 10,000 feed events over 24 h from ``SyntheticStream`` (impressions of 10
articles, clicks, dwell, hides, profile updates, new articles), 1 in 20 of them up to 30 s late.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import generate_latest

from feedstack.bench.freshness import SyntheticStream
from feedstack.core.events import EVENT_ADAPTER
from feedstack.features.aggregator import FeatureAggregator
from feedstack.features.backfill import (
    LatestRows,
    backfill_log,
    latest_rows,
    log_batches,
    parquet_batches,
    run_backfill,
)
from feedstack.features.checkpoint import load_checkpoint
from feedstack.features.definitions import smoothed_ctr
from feedstack.features.item_cache import COLUMNS, ItemFeatureCache
from feedstack.features.rows import FeatureRows
from feedstack.features.sink import MemorySink
from feedstack.features.tail import PollingTail
from feedstack.features.worker import FeatureWorker, WorkerConfig
from feedstack.features.worker_metrics import LagHistogram
from feedstack.storage.eventlog import EventLog
from feedstack.storage.offline import ParquetOfflineStore
from feedstack.storage.sqlite_log import SqliteEventLog

DAY_START_S = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DAY_EVENTS = 10_000


def simulated_day(n: int = DAY_EVENTS, users: int = 250, articles: int = 40) -> list[bytes]:
    stream = SyntheticStream(users, articles, seed=7)
    return [orjson.dumps(e) for e in stream.take(n, DAY_START_S, 86_400 / n, late_s=30)]


def fill(log: EventLog, payloads: Sequence[bytes]) -> None:
    log.append([EVENT_ADAPTER.validate_json(p) for p in payloads], payloads)


class RandomBatchTail(PollingTail):
    """Micro-batches of random sizes (1..max_size), as a live stream would cut them."""

    def __init__(self, log: EventLog, after: str | None, rng: random.Random, max_size: int):
        super().__init__(log, after)
        self.rng = rng
        self.max_size = max_size

    def poll(self, max_events: int, timeout_s: float) -> list[tuple[str, bytes]]:
        return super().poll(min(max_events, self.rng.randint(1, self.max_size)), 0.0)


def offline(sink: MemorySink) -> dict[tuple[str, str, float], dict[str, Any]]:
    """Offline rows as a store with upsert semantics keeps them (a replay re-sends rows)."""
    return {(view, r["key"], r["as_of_s"]): r for view, r in sink.offline}


def assert_same_state(a: FeatureAggregator, b: FeatureAggregator) -> None:
    for name in ("users", "articles", "topics", "regions"):
        assert getattr(a, name).ids == getattr(b, name).ids, name
    sizes = {"art": len(a.articles), "user": len(a.users), "topic": len(a.topics)}
    for name, n in [
        ("art_cnt", sizes["art"]),
        ("art_topic", sizes["art"]),
        ("art_publish", sizes["art"]),
        ("user_cnt", sizes["user"]),
        ("user_aff", sizes["user"]),
        ("user_recent", sizes["user"]),
        ("user_nrecent", sizes["user"]),
        ("topic_cnt", sizes["topic"]),
    ]:
        np.testing.assert_array_equal(getattr(a, name)[:n], getattr(b, name)[:n], err_msg=name)
    n_reg, n_art = len(a.regions), len(a.articles)
    np.testing.assert_array_equal(a.trend[:n_reg, :n_art], b.trend[:n_reg, :n_art])
    for which in ("snap", "online"):
        for entity in ("article", "user", "topic", "region"):
            fa, fb = a._dirty[which][entity], b._dirty[which][entity]
            assert np.flatnonzero(fa).tolist() == np.flatnonzero(fb).tolist(), (which, entity)
    assert (a.base_s, a.next_tick_s, a.watermark_s, a.events_seen) == (
        b.base_s,
        b.next_tick_s,
        b.watermark_s,
        b.events_seen,
    )


@pytest.fixture(scope="module")
def day_log(tmp_path_factory: pytest.TempPathFactory) -> SqliteEventLog:
    log = SqliteEventLog(tmp_path_factory.mktemp("day") / "events.sqlite")
    fill(log, simulated_day())
    return log


@pytest.fixture(scope="module")
def reference(day_log: SqliteEventLog) -> tuple[FeatureAggregator, MemorySink]:
    """The backfill: one pass over the whole day."""
    sink = MemorySink()
    agg, report = backfill_log(day_log, sink, batch=DAY_EVENTS)
    assert report.events == DAY_EVENTS and report.batches == 1
    return agg, sink


# ------------------------------------------------------------------- stream equals replay
@pytest.mark.parametrize(("seed", "tick_only"), [(1, ()), (2, ("article_stats",))])
def test_stream_with_random_batches_and_a_crash_equals_the_backfill(
    day_log: SqliteEventLog,
    reference: tuple[FeatureAggregator, MemorySink],
    tmp_path: Path,
    seed: int,
    tick_only: tuple[str, ...],
) -> None:
    rng = random.Random(seed)
    ckpt = tmp_path / "ckpt.npz"
    sink = MemorySink()
    # Few upgrade rows per batch: they trickle over many batches, split mid-FeatureRows.
    config = WorkerConfig(
        checkpoint_every_events=rng.randint(500, 2_000),
        upgrade_rows_per_batch=rng.randint(1, 4),
        tick_only_views=tick_only,
    )
    first = FeatureWorker(
        RandomBatchTail(day_log, None, rng, 400), sink, checkpoint_path=ckpt, config=config
    )
    crash_at = rng.randint(DAY_EVENTS // 3, 2 * DAY_EVENTS // 3)
    while first.report.events < crash_at:
        first.step()
        first.maybe_checkpoint()
    first.step()
    # The crash: rows past the checkpoint are in the sink, the state past it is lost.
    assert first.report.checkpoints >= 1 and first.offset != first.checkpointed_offset
    agg, offset = load_checkpoint(ckpt)
    assert offset == first.checkpointed_offset
    second = FeatureWorker(
        RandomBatchTail(day_log, offset, rng, 200),
        sink,
        agg,
        offset,
        checkpoint_path=ckpt,
        config=config,
    )
    second.run(once=True)

    ref_agg, ref_sink = reference
    assert offline(sink) == offline(ref_sink)
    assert sink.online == ref_sink.online  # every view, every key, every value: exact
    assert_same_state(second.agg, ref_agg)
    assert_same_state(load_checkpoint(ckpt)[0], ref_agg)


def test_no_double_counting_when_a_batch_is_applied_again(
    day_log: SqliteEventLog, reference: tuple[FeatureAggregator, MemorySink], tmp_path: Path
) -> None:
    """Crash right after the sink write of a batch and before its checkpoint, three times over:
    every restart re-applies from the checkpoint; the result is still one pass."""
    ckpt = tmp_path / "ckpt.npz"
    sink = MemorySink()
    config = WorkerConfig(max_batch=800, checkpoint_every_events=2_000)
    offset: str | None = None
    agg: FeatureAggregator | None = None
    for _ in range(2):
        w = FeatureWorker(
            PollingTail(day_log, offset), sink, agg, offset, checkpoint_path=ckpt, config=config
        )
        for _ in range(4):
            w.step()
            w.maybe_checkpoint()
        w.step()  # written, never checkpointed
        if ckpt.exists():
            agg, offset = load_checkpoint(ckpt)
    w = FeatureWorker(PollingTail(day_log, offset), sink, agg, offset, checkpoint_path=ckpt)
    w.run(once=True)
    assert sink.online == reference[1].online
    assert offline(sink) == offline(reference[1])


def test_resume_from_a_backfill_checkpoint(
    day_log: SqliteEventLog, reference: tuple[FeatureAggregator, MemorySink], tmp_path: Path
) -> None:
    """Deploy: backfill what is there, then stream the rest from the backfill's checkpoint."""
    ckpt = tmp_path / "ckpt.npz"
    sink = MemorySink()
    run_backfill(islice(log_batches(day_log, None, 1_500), 4), sink, checkpoint_path=ckpt)
    w = FeatureWorker.open(day_log, sink, ckpt, WorkerConfig(max_batch=700))
    assert w.offset == "6000"
    w.run(once=True)
    assert sink.online == reference[1].online
    assert offline(sink) == offline(reference[1])


def test_backfill_from_the_parquet_copy_equals_the_log(
    day_log: SqliteEventLog, reference: tuple[FeatureAggregator, MemorySink], tmp_path: Path
) -> None:
    store = ParquetOfflineStore(tmp_path / "offline", rows_per_export=3_500)
    store.sync(day_log)
    sink = MemorySink()
    agg, report = run_backfill(parquet_batches(store, batch=4_000), sink)
    assert report.events == DAY_EVENTS and report.offset == str(DAY_EVENTS)
    assert sink.online == reference[1].online
    assert offline(sink) == offline(reference[1])
    assert_same_state(agg, reference[0])


# ------------------------------------------------------------------ checkpoints and metrics
class RecordingTail(PollingTail):
    def __init__(self, log: EventLog, ckpt: Path) -> None:
        super().__init__(log)
        self.ckpt = ckpt
        self.acks: list[str] = []

    def ack(self, offset: str) -> None:
        # The checkpoint that covers the entries is on disk before they are acknowledged.
        assert load_checkpoint(self.ckpt)[1] == offset
        self.acks.append(offset)
        super().ack(offset)


def test_checkpoint_cadence_and_ack_after_save(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "events.sqlite")
    fill(log, simulated_day(3_000, users=50))
    clock = [0.0]
    tail = RecordingTail(log, tmp_path / "ckpt.npz")
    # Every batch writes all its upgrade rows (none queued): time-due checkpoints are not
    # deferred here; test_time_due_checkpoint_waits_for_queued_upgrades covers the deferral.
    config = WorkerConfig(
        max_batch=500,
        checkpoint_every_s=5.0,
        checkpoint_every_events=1_200,
        upgrade_rows_per_batch=1_000_000,
    )
    w = FeatureWorker(
        tail,
        MemorySink(),
        checkpoint_path=tmp_path / "ckpt.npz",
        config=config,
        monotonic=lambda: clock[0],
    )
    w.step()
    assert not w.maybe_checkpoint()  # 500 events, 0 s
    clock[0] += 5.0
    assert w.maybe_checkpoint()  # time
    w.step()
    w.step()
    assert not w.maybe_checkpoint()  # 1,000 events
    w.step()
    assert w.maybe_checkpoint()  # 1,500 >= 1,200 events
    clock[0] += 60.0
    assert not w.maybe_checkpoint()  # nothing new since
    assert tail.acks == ["500", "2000"]
    w.run(once=True)
    assert tail.acks[-1] == "3000" and w.checkpointed_offset == "3000"


def test_time_due_checkpoint_waits_for_queued_upgrades(tmp_path: Path) -> None:
    """A checkpoint writes every queued upgrade row first (a stall of seconds after a tick of
    10^5 users), so one due by time waits for the per-batch slices to drain the queue, up to
    checkpoint_max_delay_s; one due by event count (the bound on replay) does not wait."""
    log = SqliteEventLog(tmp_path / "events.sqlite")
    fill(log, simulated_day(3_000, users=50))
    clock = [0.0]
    config = WorkerConfig(
        max_batch=500,
        checkpoint_every_s=5.0,
        checkpoint_every_events=100_000,
        checkpoint_max_delay_s=30.0,
        upgrade_rows_per_batch=1,
    )
    w = FeatureWorker(
        PollingTail(log),
        MemorySink(),
        checkpoint_path=tmp_path / "ckpt.npz",
        config=config,
        monotonic=lambda: clock[0],
    )
    w.step()
    assert w._upgrades  # a day in 500 events crosses many ticks
    clock[0] += 5.0
    assert not w.maybe_checkpoint()  # due by time, upgrades queued: waits
    w.flush_upgrades()
    assert w.maybe_checkpoint()  # drained: goes
    w.step()
    assert w._upgrades
    clock[0] += 30.0
    assert w.maybe_checkpoint()  # waited checkpoint_max_delay_s: goes, flushing the queue
    assert not w._upgrades
    strict = FeatureWorker(
        PollingTail(log),
        MemorySink(),
        checkpoint_path=tmp_path / "ckpt2.npz",
        config=WorkerConfig(max_batch=500, checkpoint_every_events=400, upgrade_rows_per_batch=1),
        monotonic=lambda: clock[0],
    )
    strict.step()
    assert strict._upgrades and strict.maybe_checkpoint()  # due by events: no wait


def test_lag_is_online_write_time_minus_event_time(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "events.sqlite")
    day = simulated_day(50)
    fill(log, day)
    times = [orjson.loads(p)["event_time"] for p in day]
    from feedstack.features.aggregator import event_seconds

    last = event_seconds(times[-1])
    w = FeatureWorker(
        PollingTail(log),
        MemorySink(),
        config=WorkerConfig(keep_lags=True),
        wall=lambda: last + 0.5,
    )
    w.run(once=True)
    lags = np.concatenate(w.lags)
    expected = np.array([last + 0.5 - event_seconds(t) for t in times])
    np.testing.assert_array_equal(lags, expected)
    assert w.metrics.lag.count == 50
    text = generate_latest(w.metrics.registry).decode()
    below_1s = int((expected <= 1.0).sum())
    assert f'feedstack_feature_lag_seconds_bucket{{le="1.0"}} {float(below_1s)}' in text
    assert 'feedstack_feature_lag_seconds_bucket{le="+Inf"} 50.0' in text
    assert "feedstack_feature_events_total 50.0" in text
    assert w.report.lag_ms["p50"] == pytest.approx(np.percentile(expected, 50) * 1000, abs=0.01)


def test_lag_histogram_buckets_are_upper_inclusive() -> None:
    h = LagHistogram("x_seconds", "x", (0.1, 1.0))
    h.observe_many(np.array([0.05, 0.1, 0.5, 1.0, 3.0]))
    [fam] = list(h.collect())
    buckets = {s.labels["le"]: s.value for s in fam.samples if s.name == "x_seconds_bucket"}
    assert buckets == {"0.1": 2.0, "1.0": 4.0, "+Inf": 5.0}
    assert {s.name: s.value for s in fam.samples}["x_seconds_sum"] == pytest.approx(4.65)


def test_depth_gauge_tracks_the_log(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "events.sqlite")
    fill(log, simulated_day(1_000))
    w = FeatureWorker(PollingTail(log), MemorySink(), config=WorkerConfig(max_batch=300))
    w.step()
    w._update_depth()
    assert w.metrics.queue_depth._value.get() == 700


def test_latest_rows_keeps_the_newest_per_key() -> None:
    def rows(keys: list[str], ts: list[float], vals: list[float]) -> FeatureRows:
        return FeatureRows(
            "topic_stats",
            keys,
            np.array(ts),
            {"impressions_1h": np.array(vals, np.float32), "clicks_1h": np.zeros(len(keys))},
        )

    [out] = latest_rows([rows(["a", "b"], [1, 5], [1, 2]), rows(["a", "b"], [3, 5], [3, 4])])
    got = {r["key"]: (r["as_of_s"], r["impressions_1h"]) for r in out.records()}
    assert got == {"a": (3.0, 3.0), "b": (5.0, 4.0)}

    acc = LatestRows(slack=0)  # compacts as soon as superseded rows pile up
    for t in range(50):
        acc.add(rows(["a", "b", f"c{t // 10}"], [t, 100 - t, t], [t, t, t]))
    assert len(acc.parts) < 10
    got = {r["key"]: (r["as_of_s"], r["impressions_1h"]) for r in acc.rows().records()}
    assert got["a"] == (49.0, 49.0) and got["b"] == (100.0, 0.0) and got["c1"] == (19.0, 19.0)
    assert len(got) == 7


# ------------------------------------------------------------------------------ item cache
def test_item_cache_equals_the_aggregators_article_rows(
    day_log: SqliteEventLog, reference: tuple[FeatureAggregator, MemorySink]
) -> None:
    cache = ItemFeatureCache(PollingTail(day_log), max_batch=1_500)
    assert cache.refresh() == DAY_EVENTS
    agg = reference[0]
    ids = [*agg.articles.ids[::-1], "never-seen"]
    at = (agg.watermark_s or 0.0) + 123.0
    got = cache.features(ids, at)
    assert got.shape == (len(ids), len(COLUMNS)) and got.dtype == np.float32
    rows = agg.article_rows(np.arange(len(agg.articles))[::-1], at).records()
    for i, row in enumerate(rows):
        counts = [row[c] for c in COLUMNS[:6]]
        assert got[i, :6].tolist() == counts, row["key"]  # bit-identical to the worker's rows
        for j, w in enumerate(("5m", "1h", "24h")):
            ctr = smoothed_ctr(row[f"clicks_{w}"], row[f"impressions_{w}"])
            assert got[i, 6 + j] == np.float32(ctr)
        assert got[i, 9] == np.float32(at - row["publish_time_s"])
    prior = np.float32(smoothed_ctr(0.0, 0.0))
    assert got[-1, :6].tolist() == [0.0] * 6 and (got[-1, 6:9] == prior).all()
    assert np.isnan(got[-1, 9])


def test_item_cache_follows_the_stream_and_keeps_no_users(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "events.sqlite")
    day = simulated_day(3_000)
    fill(log, day[:1_500])
    cache = ItemFeatureCache(PollingTail(log))
    cache.refresh()
    before = cache.size
    fill(log, day[1_500:])
    assert cache.refresh() == 1_500
    assert cache.size >= before
    assert cache.agg.users.ids == ["_"]
    full = FeatureAggregator()
    full.apply(orjson.loads(p) for p in day)
    n = len(full.articles)
    assert cache.agg.articles.ids == full.articles.ids
    np.testing.assert_array_equal(cache.agg.art_cnt[:n], full.art_cnt[:n])


def test_item_cache_starts_from_the_workers_checkpoint(
    day_log: SqliteEventLog, reference: tuple[FeatureAggregator, MemorySink], tmp_path: Path
) -> None:
    ckpt = tmp_path / "ckpt.npz"
    run_backfill(islice(log_batches(day_log, None, 2_500), 2), MemorySink(), checkpoint_path=ckpt)
    cache = ItemFeatureCache.open(day_log, ckpt)
    assert cache.refresh() == DAY_EVENTS - 5_000
    agg = reference[0]
    at = (agg.watermark_s or 0.0) + 5.0
    ids = agg.articles.ids
    expected = agg.article_rows(np.arange(len(ids)), at).columns["clicks_1h"]
    assert cache.features(ids, at)[:, COLUMNS.index("clicks_1h")].tolist() == expected.tolist()


def test_item_cache_call_for_500_candidates_is_one_vectorized_call(
    day_log: SqliteEventLog,
) -> None:
    cache = ItemFeatureCache(PollingTail(day_log))
    cache.refresh()
    ids = [f"a{i % cache.size}" for i in range(500)]
    at = (cache.watermark_s or 0.0) + 1.0
    cache.features(ids, at)
    samples = []
    for _ in range(200):
        t = time.perf_counter()
        cache.features(ids, at)
        samples.append(time.perf_counter() - t)
    # Typically ~0.1 ms; the bound is loose because this machine is shared.
    assert float(np.median(samples)) < 2e-3


def test_upgrade_rows_trickle_and_are_all_online_before_a_checkpoint(
    day_log: SqliteEventLog, tmp_path: Path
) -> None:
    sink = MemorySink()
    config = WorkerConfig(max_batch=400, upgrade_rows_per_batch=1, checkpoint_every_events=10**9)
    w = FeatureWorker(PollingTail(day_log), sink, checkpoint_path=tmp_path / "c.npz", config=config)
    for _ in range(10):
        w.step()
    queued = sum(len(r) for r in w._upgrades)
    assert queued > 0  # ticks crossed; their as-of upgrades wait, one row per batch
    w.checkpoint()
    assert not w._upgrades
    # Past max_queued_upgrades (catching up through many ticks) the queue is written at once.
    config = WorkerConfig(max_batch=400, upgrade_rows_per_batch=1, max_queued_upgrades=0)
    w = FeatureWorker(PollingTail(day_log), sink, config=config)
    for _ in range(10):
        w.step()
        assert not w._upgrades


def test_crash_and_restart_on_redis_streams(redis_prefix: str, tmp_path: Path) -> None:
    """The same, through the consumer group: the restart re-reads its pending entries first."""
    from feedstack.features.tail import RedisGroupTail
    from feedstack.storage.redis_log import RedisStreamEventLog
    from tests.conftest import REDIS_URL

    log = RedisStreamEventLog(f"{REDIS_URL}?prefix={redis_prefix}", prefix=redis_prefix)
    fill(log, simulated_day(3_000, users=60))
    ckpt = tmp_path / "ckpt.npz"
    sink = MemorySink()
    config = WorkerConfig(max_batch=250, max_wait_s=0.0, checkpoint_every_events=1_000)
    first = FeatureWorker.open(log, sink, ckpt, config)
    for _ in range(7):
        first.step()
        first.maybe_checkpoint()
    assert isinstance(first.tail, RedisGroupTail)
    assert first.tail.pending() == 750  # delivered since the last checkpoint, not acknowledged
    first.close()  # the crash: no checkpoint of the last 3 batches

    second = FeatureWorker.open(log, sink, ckpt, config)
    assert second.offset == first.checkpointed_offset
    second.run(once=True)
    assert isinstance(second.tail, RedisGroupTail) and second.tail.pending() == 0
    reference = MemorySink()
    backfill_log(log, reference)
    assert sink.online == reference.online
    assert offline(sink) == offline(reference)
    second.close()
    log.close()


def test_item_cache_follows_in_a_thread(tmp_path: Path) -> None:
    import threading

    log = SqliteEventLog(tmp_path / "events.sqlite")
    fill(log, simulated_day(500, users=20))
    cache = ItemFeatureCache(PollingTail(log, sleep=lambda s: None))
    stop = threading.Event()
    thread = threading.Thread(target=cache.follow, args=(stop, 0.0), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while cache.events < 500 and time.monotonic() < deadline:
        time.sleep(0.001)
    stop.set()
    thread.join(5)
    assert cache.events == 500 and cache.size > 0


# ------------------------------------------------------------------------------ quarantine
GARBAGE = [
    b"not json at all",
    b'{"type": "click", "event_id": "g2", "user_id": "u1"}',  # no time, no article
    b'{"type": "teleport", "event_id": "g3", "event_time": "2026-01-01T00:00:00+00:00"}',
]


def test_records_the_feature_code_cannot_use_are_quarantined_not_fatal(tmp_path: Path) -> None:
    """A log written by another producer (or an older version) holds records the feature code
    cannot read: the worker, the backfill and the serving item cache set them aside (counted,
    the worker's and the backfill's in the dead-letter store) and compute the same state as
    over the clean log."""
    from feedstack.core.events import Click
    from feedstack.storage.deadletter import FileDeadLetter

    day = simulated_day(2_000)
    log = SqliteEventLog(tmp_path / "events.sqlite")
    fill(log, day[:700])
    for i, raw in enumerate(GARBAGE):  # past validation, as another producer could write
        log.append([Click.model_construct(event_id=f"g{i}")], [raw])
        fill(log, day[700 + 400 * i : 700 + 400 * (i + 1)])
    fill(log, day[1_900:])
    clean_log = SqliteEventLog(tmp_path / "clean.sqlite")
    fill(clean_log, day)
    clean_sink = MemorySink()
    clean, _ = backfill_log(clean_log, clean_sink)

    dead = FileDeadLetter(tmp_path / "dl")
    sink = MemorySink()
    worker = FeatureWorker(PollingTail(log), sink)
    worker.dead_letter = dead
    worker.run(once=True)
    assert worker.report.quarantined == 3 and worker.report.events == 2_000
    assert_same_state(worker.agg, clean)
    assert sink.online == clean_sink.online
    kept = [r for r in dead.read() if r.source == "feature worker"]
    assert {r.field for r in kept} == {"<record>", "article_id", "type"}
    assert all("quarantined by feature worker" in r.reason for r in kept)

    rejected: list[Any] = []
    agg, report = run_backfill(
        log_batches(log, batch=500, on_rejected=rejected.extend), MemorySink()
    )
    assert len(rejected) == 3 and report.events == 2_000
    assert_same_state(agg, clean)

    cache = ItemFeatureCache(PollingTail(log))
    cache.refresh()
    assert cache.skipped == 3 and cache.agg.articles.ids == clean.articles.ids
