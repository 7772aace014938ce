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

How a batch is cut at snapshot ticks, so that the online values are a function of the log
alone, is in features/ticks.py.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from feedstack.features.aggregator import FeatureAggregator, event_seconds
from feedstack.features.checkpoint import load_checkpoint, save_checkpoint
from feedstack.features.dedupe import RecentIds
from feedstack.features.definitions import ONLINE_AT_TICKS
from feedstack.features.rows import FeatureRows, cut
from feedstack.features.sink import FeatureSink
from feedstack.features.tail import DEFAULT_CONSUMER, DEFAULT_GROUP, LogTail, open_tail
from feedstack.features.ticks import apply_cut_at_ticks, open_segment_rows
from feedstack.features.worker_metrics import WorkerMetrics, lag_summary_ms
from feedstack.storage.deadletter import DeadLetterStore
from feedstack.storage.eventlog import EventLog
from feedstack.storage.quarantine import parse_stream

F64 = np.float64


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
