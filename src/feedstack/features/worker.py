"""The streaming feature worker: log tail -> FeatureAggregator -> feature sink, with checkpoints.

Per micro-batch (what arrived, up to ``max_batch`` events; the poll waits at most ``max_wait_s``):
  1. poll the tail, parse the JSON with orjson;
  2. ``agg.apply`` (cut at every snapshot tick, see below) -> snapshot rows;
  3. ``sink.write_offline(snapshot rows)``, then ``sink.write_online(agg.online_rows() + the
     snapshot rows that carry news + a slice of the queued as-of upgrades)``;
  4. every event's lag (wall time once the online write returned - event time) goes into the
     histogram ``feedstack_feature_lag_seconds``;
  5. every ``checkpoint_every_s`` seconds or ``checkpoint_every_events`` events:
     ``save_checkpoint(agg, offset)``, then ``tail.ack(offset)``.
On start the worker loads the checkpoint and opens the tail after its offset.

Crash safety. A crash after a sink write and before the next checkpoint re-applies the events
after the checkpoint. Nothing is counted twice: the aggregator state comes from the checkpoint (it
reflects exactly the events up to its offset), and sink writes are idempotent upserts (offline rows
keyed by view, key and as-of time; online "newest as-of wins"). tests/e2e/test_worker_crash.py
kill -9s a worker and proves it.

Deterministic online values. ``online_rows()`` renders the changed entities as of the batch's
watermark, so *which* as-of time a row carries depends on where batches were cut. To make the
values the online store ends with a function of the log alone, the worker cuts each batch just
before every event that crosses a snapshot tick and drops the online flags there: every entity
changed before the tick is in the snapshot rows of that tick, which are written online too and,
being as of the tick, supersede any row written earlier in the minute. So an entity's final online
row is its snapshot row of the last minute in which it changed, or, for the minute still open,
``open_segment_rows`` as of the watermark (written by ``finish()`` at the end of a bounded run).
Any batching, any crash and restart, and the backfill give the same rows, to the bit
(tests/unit/test_worker.py). Between those points the online store holds provisional rows as of the
last batch: the freshest values, brought to request time by ``definitions.decay``.

At a tick the snapshot covers every entity changed in the minute (10^5 users at 5,000 events/s).
Only the few changed since the last batch (the flags dropped at the cut) carry news; for the rest
the snapshot row only moves the as-of time of a row already online. Those "upgrade" rows are
written a slice per batch (``upgrade_rows_per_batch``) instead of in one burst that would hold up
the events behind it, and all of them before any checkpoint, so a checkpoint never covers a tick
whose rows are not all online. ``tick_only_views`` sends a whole view down that path (no per-batch
rows): for article_stats when serving keeps item features in memory (item_cache.py).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import HistogramMetricFamily, Metric

from feedstack.features.aggregator import FeatureAggregator, event_seconds
from feedstack.features.checkpoint import load_checkpoint, save_checkpoint
from feedstack.features.dedupe import RecentIds
from feedstack.features.definitions import ONLINE_AT_TICKS
from feedstack.features.rows import FeatureRows
from feedstack.features.sink import FeatureSink
from feedstack.features.tail import DEFAULT_CONSUMER, DEFAULT_GROUP, LogTail, open_tail
from feedstack.storage.deadletter import DeadLetterStore
from feedstack.storage.eventlog import EventLog
from feedstack.storage.quarantine import parse_stream

F64 = np.float64
ENTITIES = ("article", "user", "topic", "region")
# Seconds. Sub-second buckets resolve the live path; the long tail shows catch-up after downtime.
LAG_BUCKETS_S = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    900.0, 3600.0, 86_400.0,
)  # fmt: skip


@dataclass(frozen=True)
class WorkerConfig:
    max_batch: int = 5_000  # events per micro-batch at most
    max_wait_s: float = 0.1  # how long a poll waits when nothing is there
    checkpoint_every_s: float = 10.0
    checkpoint_every_events: int = 500_000
    depth_every_s: float = 1.0  # refresh of the queue-depth gauge (a count on SQLite)
    keep_lags: bool = False  # keep every event's lag in memory (benchmarks)
    # Seconds a due checkpoint may wait for the upgrade queue to drain (maybe_checkpoint).
    checkpoint_max_delay_s: float = 60.0
    # As-of upgrades written per batch (see above). Each costs ~0.1 ms with Feast's SQLite
    # store: 500 keeps a batch's extra work near 50 ms and drains a tick of 10^5 user rows in
    # ~200 batches (~15 s at 5,000 events/s), well before the next tick.
    upgrade_rows_per_batch: int = 500
    max_queued_upgrades: int = 200_000  # beyond it (catching up: many ticks per batch), flush
    # Views written online only at ticks (with the upgrades), not every batch. For article_stats
    # when serving reads item features from its in-memory cache (item_cache.py), not the store:
    # every impression touches ~10 articles, so per-batch article rows are most of the writes.
    # Default: only user features go online every batch (serving reads them from the store per
    # request); articles, topics and trending go at minute ticks. Measured with Feast's SQLite
    # online store at 5,000 events/s: every view every batch saturated the worker (lag p99
    # 1.4 s); this split gave p99 0.48 s (`feedstack bench freshness --sink feast`).
    tick_only_views: tuple[str, ...] = ONLINE_AT_TICKS
    group: str = DEFAULT_GROUP  # Redis consumer group and consumer name
    consumer: str = DEFAULT_CONSUMER


# ------------------------------------------------------------------------------ metrics
class LagHistogram:
    """A Prometheus histogram observed a batch at a time.

    prometheus_client's ``Histogram.observe`` takes one value (~1.2 us with its lock); the worker
    has thousands per batch, so it counts them into buckets with numpy (``searchsorted`` +
    ``bincount``, ~20 us per 5,000) and exposes the standard ``_bucket``/``_sum``/``_count``
    series through a custom collector.
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = np.asarray(buckets, dtype=F64)
        self._counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # last: above every bound
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe_many(self, values: np.ndarray[Any, np.dtype[np.float64]]) -> None:
        # Bucket i counts values <= bounds[i] ("le"), i.e. the first bound >= value.
        counts = np.bincount(
            np.searchsorted(self.bounds, values, side="left"), minlength=len(self._counts)
        )
        total = float(values.sum())
        with self._lock:
            self._counts += counts
            self._sum += total

    @property
    def count(self) -> int:
        return int(self._counts.sum())

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            cum = np.cumsum(self._counts).tolist()
            total = self._sum
        buckets = [(repr(float(b)), float(c)) for b, c in zip(self.bounds, cum, strict=False)]
        buckets.append(("+Inf", float(cum[-1])))
        yield HistogramMetricFamily(self.name, self.documentation, buckets, total)


class WorkerMetrics:
    """The worker's Prometheus metrics, in ``registry`` (a fresh one unless given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.lag = LagHistogram(
            "feedstack_feature_lag_seconds",
            "Event time to online feature write complete, per event.",
            LAG_BUCKETS_S,
        )
        r.register(self.lag)
        self.events = Counter(
            "feedstack_feature_events", "Events applied by the feature worker.", registry=r
        )
        self.queue_depth = Gauge(
            "feedstack_feature_queue_depth",
            "Events in the log past the worker's position.",
            registry=r,
        )
        self.watermark = Gauge(
            "feedstack_feature_watermark_timestamp_seconds",
            "Newest event time the worker has applied (Unix seconds).",
            registry=r,
        )
        self.checkpoint_seconds = Histogram(
            "feedstack_feature_checkpoint_seconds",
            "Time to write one checkpoint (the worker stalls meanwhile).",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )


# ------------------------------------------------------------------------------ reports
@dataclass(frozen=True)
class BatchReport:
    events: int
    offset: str
    snapshot_rows: int  # written offline
    online_rows: int  # written online (provisional, tick news, upgrades)
    busy_s: float  # parse + apply + sink writes
    max_lag_s: float


@dataclass
class WorkerReport:
    events: int = 0
    batches: int = 0
    seconds: float = 0.0
    busy_s: float = 0.0
    checkpoints: int = 0
    snapshot_rows: int = 0
    online_rows: int = 0
    offset: str | None = None
    quarantined: int = 0  # records set aside (storage/quarantine.py), in the dead-letter store
    lag_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["events_per_s"] = round(self.events / self.seconds, 1) if self.seconds > 0 else None
        d["busy_events_per_s"] = round(self.events / self.busy_s, 1) if self.busy_s > 0 else None
        return d


# --------------------------------------------------------------- deterministic emission
VIEW_ENTITY = {"article_stats": "article", "user_features": "user", "topic_stats": "topic"}
VIEW_ENTITY["region_trending"] = "region"


def discard_online(agg: FeatureAggregator) -> dict[str, np.ndarray[Any, Any]]:
    """Clear the online flags without rendering; returns the entity indices that were set. Used
    at a snapshot tick, whose rows (written online, as of the tick) cover every entity changed
    before it."""
    return agg.discard_online()


def take(fr: FeatureRows, idx: Sequence[int]) -> FeatureRows:
    """The rows ``idx`` of ``fr`` (numpy columns by fancy indexing, list columns by position)."""
    sel = np.asarray(idx, dtype=np.int64)
    cols = {
        name: col[sel]
        if isinstance(col, np.ndarray)
        else col.take(pa.array(sel))
        if isinstance(col, pa.Array)
        else [col[i] for i in idx]
        for name, col in fr.columns.items()
    }
    return FeatureRows(fr.view, [fr.keys[i] for i in idx], fr.as_of_s[sel], cols)


def cut(fr: FeatureRows, lo: int, hi: int) -> FeatureRows:
    """Rows ``lo:hi`` of ``fr`` as slices (numpy views, Arrow slices, list slices)."""
    cols = {
        name: col.slice(lo, hi - lo) if isinstance(col, pa.Array) else col[lo:hi]
        for name, col in fr.columns.items()
    }
    return FeatureRows(fr.view, fr.keys[lo:hi], fr.as_of_s[lo:hi], cols)


def concat(parts: Sequence[FeatureRows]) -> FeatureRows:
    """Rows of one view, concatenated in order."""
    first = parts[0]
    cols: dict[str, Any] = {}
    for name, col in first.columns.items():
        if isinstance(col, np.ndarray):
            cols[name] = np.concatenate([p.columns[name] for p in parts])
        elif isinstance(col, pa.Array):
            cols[name] = pa.concat_arrays([p.columns[name] for p in parts])
        else:
            cols[name] = [v for p in parts for v in p.columns[name]]
    keys = [k for p in parts for k in p.keys]
    return FeatureRows(first.view, keys, np.concatenate([p.as_of_s for p in parts]), cols)


def _split_news(
    agg: FeatureAggregator, rows: list[FeatureRows], changed: dict[str, np.ndarray[Any, Any]]
) -> tuple[list[FeatureRows], list[FeatureRows]]:
    """Snapshot rows -> (rows of entities in ``changed``: news, the others: as-of upgrades)."""
    news, upgrades = [], []
    indexes = {"article": agg.articles, "user": agg.users, "topic": agg.topics}
    indexes["region"] = agg.regions
    for fr in rows:
        entity = VIEW_ENTITY[fr.view]
        ids = indexes[entity].ids
        fresh = {ids[i] for i in changed[entity].tolist()}
        is_news = [k in fresh for k in fr.keys]
        n_news = sum(is_news)
        if n_news == len(fr):
            news.append(fr)
        elif n_news == 0:
            upgrades.append(fr)
        else:
            news.append(take(fr, [i for i, f in enumerate(is_news) if f]))
            upgrades.append(take(fr, [i for i, f in enumerate(is_news) if not f]))
    return news, upgrades


def open_segment_rows(agg: FeatureAggregator) -> list[FeatureRows]:
    """Rows, as of the watermark, of every entity changed since the last snapshot tick (the
    minute still open). Reads the snapshot flags without clearing them: the state is unchanged."""
    at = agg.watermark_s
    if at is None:
        return []
    out = []
    builders = (agg.article_rows, agg.user_rows, agg.topic_rows, agg.region_rows)
    for entity, build in zip(ENTITIES, builders, strict=True):
        idx = agg.changed_since_snapshot(entity)
        if len(idx):
            out.append(build(idx, at))
    return out


@dataclass
class TickRows:
    """What applying a batch produced at snapshot ticks."""

    snapshots: list[FeatureRows] = field(default_factory=list)  # every row: offline
    news: list[FeatureRows] = field(default_factory=list)  # online now
    upgrades: list[FeatureRows] = field(default_factory=list)  # online, as-of upgrades only


def apply_cut_at_ticks(
    agg: FeatureAggregator,
    events: Sequence[dict[str, Any]],
    times: np.ndarray[Any, np.dtype[np.float64]],
) -> TickRows:
    """``agg.apply(events)``, dropping the online flags just before each event that crosses a
    snapshot tick (see the module docstring). ``times`` are the events' ``event_seconds``."""
    out = TickRows()
    i, n = 0, len(events)
    if n and agg.next_tick_s is None:  # the first event ever starts the clock
        out.snapshots += agg.apply(events[:1])
        i = 1
    while i < n:
        tick = agg.next_tick_s
        assert tick is not None
        crossing = np.flatnonzero(times[i:] >= tick)
        j = i + int(crossing[0]) if len(crossing) else n
        if j > i:
            out.snapshots += agg.apply(events[i:j])
        if j < n:
            changed = discard_online(agg)
            rows = agg.apply(events[j : j + 1])  # the snapshot at the tick, then the event
            news, upgrades = _split_news(agg, rows, changed)
            out.snapshots += rows
            out.news += news
            out.upgrades += upgrades
        i = j + 1
    return out


# ------------------------------------------------------------------------------ the worker
class FeatureWorker:
    """One worker: a tail, an aggregator (with the offset it reflects), a sink, a checkpoint."""

    def __init__(
        self,
        tail: LogTail,
        sink: FeatureSink,
        agg: FeatureAggregator | None = None,
        offset: str | None = None,
        *,
        checkpoint_path: Path | None = None,
        config: WorkerConfig | None = None,
        metrics: WorkerMetrics | None = None,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        dedupe: RecentIds | None = None,
    ) -> None:
        self.tail = tail
        self.dedupe = dedupe  # drop ids seen in the window (a partitioned log: dedupe.py)
        self.sink = sink
        self.agg = agg if agg is not None else FeatureAggregator()
        self.offset = offset  # of the last event applied
        self.checkpoint_path = checkpoint_path
        self.config = config or WorkerConfig()
        self.metrics = metrics or WorkerMetrics()
        self._wall = wall
        self._monotonic = monotonic
        self.checkpointed_offset = offset
        self._since_checkpoint = 0
        self._last_checkpoint = monotonic()
        self._last_depth: float | None = None
        self.report = WorkerReport(offset=offset)
        self.lag_times: list[np.ndarray[Any, np.dtype[np.float64]]] = []  # with keep_lags
        self.lags: list[np.ndarray[Any, np.dtype[np.float64]]] = []
        self._upgrades: deque[FeatureRows] = deque()  # as-of upgrades not yet written
        # Where records this worker cannot use go (set by the CLI); without one they are
        # skipped and counted only.
        self.dead_letter: DeadLetterStore | None = None

    @classmethod
    def open(
        cls,
        log: EventLog,
        sink: FeatureSink,
        checkpoint_path: Path | None,
        config: WorkerConfig | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> FeatureWorker:
        """Resume from ``checkpoint_path`` if it exists, else start at the log's beginning."""
        config = config or WorkerConfig()
        agg, offset = FeatureAggregator(), None
        if checkpoint_path is not None and checkpoint_path.exists():
            agg, offset = load_checkpoint(checkpoint_path)
        tail = open_tail(log, offset, group=config.group, consumer=config.consumer)
        return cls(
            tail,
            sink,
            agg,
            offset,
            checkpoint_path=checkpoint_path,
            config=config,
            metrics=metrics,
        )

    # ------------------------------------------------------------------------ one batch
    def process(self, records: Sequence[tuple[str, bytes]]) -> BatchReport:
        """Apply one micro-batch of ``(offset, JSON)`` records and write its rows."""
        start = self._monotonic()
        events, rejected = parse_stream(records, "feature worker")
        if rejected:  # stored first: the offset moves past them only once they are kept
            if self.dead_letter is not None:
                self.dead_letter.write(rejected)
            self.report.quarantined += len(rejected)
        if not events:
            self.offset = self.report.offset = records[-1][0]
            return BatchReport(0, self.offset, 0, 0, self._monotonic() - start, 0.0)
        if self.dedupe is not None:
            fresh = self.dedupe.fresh
            events = [e for e in events if fresh(e["event_id"])]
        times = np.fromiter((event_seconds(e["event_time"]) for e in events), F64, len(events))
        ticks = apply_cut_at_ticks(self.agg, events, times)
        snapshots = ticks.snapshots
        online = self.agg.online_rows()
        news = ticks.news
        if snapshots:
            self.sink.write_offline(snapshots)
        if self.config.tick_only_views:
            later = set(self.config.tick_only_views)
            online = [r for r in online if r.view not in later]
            self._upgrades.extend(r for r in news if r.view in later)
            news = [r for r in news if r.view not in later]
        self._upgrades.extend(ticks.upgrades)
        backlog = sum(len(r) for r in self._upgrades) > self.config.max_queued_upgrades
        upgrades = self._take_upgrades(None if backlog else self.config.upgrade_rows_per_batch)
        rows = news + online + upgrades
        if rows:
            self.sink.write_online(rows)
        lags = self._wall() - times
        busy = self._monotonic() - start

        m = self.metrics
        m.lag.observe_many(lags)
        m.events.inc(len(events))
        if self.agg.watermark_s is not None:
            m.watermark.set(self.agg.watermark_s)
        if self.config.keep_lags:
            self.lag_times.append(times)
            self.lags.append(lags)
        self.offset = records[-1][0]
        self._since_checkpoint += len(events)
        n_snap = sum(len(r) for r in snapshots)
        n_online = sum(len(r) for r in rows)
        rep = self.report
        rep.events += len(events)
        rep.batches += 1
        rep.busy_s += busy
        rep.snapshot_rows += n_snap
        rep.online_rows += n_online
        rep.offset = self.offset
        max_lag = float(lags.max()) if len(lags) else 0.0
        return BatchReport(len(events), self.offset, n_snap, n_online, busy, max_lag)

    def _take_upgrades(self, limit: int | None) -> list[FeatureRows]:
        """Up to ``limit`` queued upgrade rows (all with None), oldest first."""
        out: list[FeatureRows] = []
        room = limit if limit is not None else sum(len(r) for r in self._upgrades)
        while self._upgrades and room > 0:
            fr = self._upgrades.popleft()
            if len(fr) > room:
                # Contiguous slices, not a copy of the rest: a tick queues ~10^5 user rows and
                # re-copying the remainder on every batch cost more than writing the slice.
                self._upgrades.appendleft(cut(fr, room, len(fr)))
                fr = cut(fr, 0, room)
            out.append(fr)
            room -= len(fr)
        return out

    def flush_upgrades(self) -> int:
        """Write every queued upgrade row online; returns how many."""
        rows = self._take_upgrades(None)
        if rows:
            self.sink.write_online(rows)
        return sum(len(r) for r in rows)

    # ------------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> bool:
        """Save the state and the offset it reflects, then let the tail acknowledge up to it.
        Returns False if there was nothing new (or nowhere) to save."""
        # Every row of every tick the checkpoint covers is online before the checkpoint exists.
        self.flush_upgrades()
        if self.checkpoint_path is None or self.offset == self.checkpointed_offset:
            self._since_checkpoint = 0
            self._last_checkpoint = self._monotonic()
            return False
        t = self._monotonic()
        recent = self.dedupe.to_array() if self.dedupe is not None else None
        save_checkpoint(self.agg, self.offset, self.checkpoint_path, recent)
        if self.offset is not None:
            self.tail.ack(self.offset)
        self.metrics.checkpoint_seconds.observe(self._monotonic() - t)
        self.checkpointed_offset = self.offset
        self._since_checkpoint = 0
        self._last_checkpoint = self._monotonic()
        self.report.checkpoints += 1
        return True

    def maybe_checkpoint(self) -> bool:
        """Checkpoint if ``checkpoint_every_events`` events or ``checkpoint_every_s`` seconds
        (with at least one event, and no upgrade rows queued, see below) have passed since the
        last one."""
        cfg = self.config
        waited = self._monotonic() - self._last_checkpoint
        if self._since_checkpoint >= cfg.checkpoint_every_events:  # the hard bound on replay
            return self.checkpoint()
        if self._since_checkpoint == 0 or waited < cfg.checkpoint_every_s:
            return False
        # A checkpoint first writes every queued upgrade row (see checkpoint()); right after a
        # tick that is ~10^5 rows, a stall of seconds. So a checkpoint due by time waits until
        # the per-batch slices have drained the queue, up to ``checkpoint_max_delay_s``.
        if self._upgrades and waited < cfg.checkpoint_max_delay_s:
            return False
        return self.checkpoint()

    def _update_depth(self) -> None:
        now = self._monotonic()
        if self._last_depth is not None and now - self._last_depth < self.config.depth_every_s:
            return
        self._last_depth = now
        depth = self.tail.depth()
        if depth is not None:
            self.metrics.queue_depth.set(depth)

    def finish(self) -> int:
        """End of a bounded run: write the open minute's rows online as of the watermark, so the
        online store ends in the same state however the log was batched. Returns rows written."""
        self.flush_upgrades()
        rows = open_segment_rows(self.agg)
        if rows:
            self.sink.write_online(rows)
        return sum(len(r) for r in rows)

    # ------------------------------------------------------------------------ the loop
    def step(self) -> BatchReport | None:
        """Poll once and process what came; None if nothing did."""
        records = self.tail.poll(self.config.max_batch, self.config.max_wait_s)
        return self.process(records) if records else None

    def run(
        self,
        *,
        once: bool = False,
        stop: Callable[[], bool] | None = None,
        on_batch: Callable[[BatchReport], None] | None = None,
    ) -> WorkerReport:
        """Process until ``stop()`` is true (checked after every poll) or, with ``once``, until
        the log is drained (then ``finish()``). Checkpoints on the way and at the end."""
        began = self._monotonic()
        while True:
            rep = self.step()
            if rep is not None and on_batch is not None:
                on_batch(rep)
            self.maybe_checkpoint()
            self._update_depth()
            if (stop is not None and stop()) or (once and rep is None):
                break
        if once:
            self.finish()
        self.checkpoint()
        self.report.seconds += self._monotonic() - began
        if self.config.keep_lags and self.lags:
            self.report.lag_ms = lag_summary_ms(np.concatenate(self.lags))
        return self.report

    def close(self) -> None:
        self.tail.close()


def lag_summary_ms(lags_s: np.ndarray[Any, np.dtype[np.float64]]) -> dict[str, float]:
    """p50/p95/p99/max of lags given in seconds, in milliseconds (exact, not from buckets)."""
    if not len(lags_s):
        return {}
    p50, p95, p99 = np.percentile(lags_s, [50, 95, 99]) * 1000
    return {
        "p50": round(float(p50), 2),
        "p95": round(float(p95), 2),
        "p99": round(float(p99), 2),
        "max": round(float(lags_s.max()) * 1000, 2),
        "n": len(lags_s),
    }
