"""Feature workers in a Kafka consumer group: N processes split the topic's partitions.

The unit of state is the partition, not the process: for every partition it holds, a member runs
a *task*, a FeatureWorker with its own aggregator and its own checkpoint file
(``partition-{p}.npz``: state, the partition's offset and its dedupe window). On a rebalance the
member checkpoints the tasks it gives up, and the member that receives a partition resumes its
task from that checkpoint, so no state is ever split or merged between processes and a crash
replays each partition from its own checkpoint. The checkpoint folder is shared by the members
(a shared volume in production).

What a task writes. A partition holds all the events of its users (the log keys them by user id),
so a task's user_features are exact; it writes them online and offline as a lone worker would.
Article, topic and trending counters need every user's events: a task's are its partition's
share. The task saves that share at every snapshot tick (partials.py), and the member holding
partition 0 merges the shares of all partitions into the global rows once every partition has
passed the tick, and writes them (these views are online at ticks only, as with one worker).
Serving is not held up by the merge: it computes article features from the whole log itself
(item_cache.py) and reads only user features from the store.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from feedstack.features.aggregator import FeatureAggregator
from feedstack.features.checkpoint import load_checkpoint, load_recent_ids
from feedstack.features.dedupe import DEDUPE_WINDOW, RecentIds
from feedstack.features.definitions import USER_FEATURES
from feedstack.features.kafka_tail import SESSION_TIMEOUT_MS, KafkaGroupTail
from feedstack.features.partials import (
    GLOBAL_VIEWS,
    Partial,
    merged_aggregator,
    next_tick,
    render,
)
from feedstack.features.rows import FeatureRows
from feedstack.features.sink import FeatureSink
from feedstack.features.worker import FeatureWorker, WorkerConfig, WorkerReport
from feedstack.features.worker_metrics import WorkerMetrics
from feedstack.storage.deadletter import DeadLetterStore
from feedstack.storage.kafka_log import KafkaEventLog


class ViewFilter:
    """A sink that passes on only the rows of ``views``."""

    def __init__(self, sink: FeatureSink, views: Sequence[str]) -> None:
        self.sink = sink
        self.views = set(views)

    def write_online(self, rows: Sequence[FeatureRows]) -> None:
        keep = [r for r in rows if r.view in self.views]
        if keep:
            self.sink.write_online(keep)

    def write_offline(self, rows: Sequence[FeatureRows]) -> None:
        keep = [r for r in rows if r.view in self.views]
        if keep:
            self.sink.write_offline(keep)


class _PartitionCursor:
    """The tail a task sees: acknowledging commits its partition's offset to the group."""

    def __init__(self, worker: GroupWorker, partition: int) -> None:
        self.worker = worker
        self.partition = partition

    def poll(self, max_events: int, timeout_s: float) -> list[tuple[str, bytes]]:
        raise NotImplementedError("the group worker polls for its tasks")

    def ack(self, offset: str) -> None:
        self.worker.tail.commit({self.partition: int(offset) + 1})

    def depth(self) -> int | None:
        return None

    def close(self) -> None:
        """The group tail belongs to the group worker."""


class Merger:
    """Sums the partitions' shares of the global views (partials.py) into rows, tick by tick."""

    def __init__(self, folder: Path, partitions: int, sink: FeatureSink) -> None:
        self.folder = folder
        self.partitions = partitions
        self.sink = sink
        self.done_until = -math.inf  # the last tick merged
        self.shares: dict[int, list[Partial]] = {p: [] for p in range(partitions)}
        self._seen: set[str] = set()
        self.rows_written = 0

    def _load(self) -> None:
        if not self.folder.exists():
            return
        for path in sorted(self.folder.glob("p*.npz")):
            if path.name in self._seen:
                continue
            part = Partial.load(path)
            self._seen.add(path.name)
            mine = [s for s in self.shares[part.partition] if s.final == part.final]
            if part.final and mine:
                self.shares[part.partition].remove(mine[0])
            self.shares[part.partition].append(part)
            self.shares[part.partition].sort(key=lambda s: (s.tick_s, s.final))

    def step(self) -> int:
        """Merge every tick that all partitions have passed; returns rows written."""
        self._load()
        if not all(self.shares.values()):
            return 0  # a partition has not reached its first tick yet
        ready = min(max(s.passed_s for s in shares) for shares in self.shares.values())
        finals = [s for shares in self.shares.values() for s in shares if s.final]
        all_final = len(finals) == self.partitions
        watermark = max(s.watermark_s for s in finals) if all_final else math.inf
        ticks = sorted(
            {
                s.tick_s
                for shares in self.shares.values()
                for s in shares
                if (not s.final or s.tick_s <= watermark) and self.done_until < s.tick_s <= ready
            }
        )
        written = 0
        for tick in ticks:
            written += self._merge(tick, tick)
            self.done_until = tick
        if all_final:  # the open minute, as of the merged watermark
            written += self._merge(math.inf, watermark)
            self.done_until = math.inf
        self.rows_written += written
        self._forget()
        return written

    def _merge(self, tick: float, at_s: float) -> int:
        shares, changed = [], {v: set[str]() for v in GLOBAL_VIEWS}
        for parts in self.shares.values():
            upto = [s for s in parts if s.tick_s <= tick]
            if upto:
                shares.append(upto[-1])
            for s in parts:
                if self.done_until < s.tick_s <= tick:
                    for view, keys in s.changed.items():
                        changed[view].update(keys)
        if not shares or not any(changed.values()):
            return 0
        rows = render(merged_aggregator(shares), changed, at_s)
        if rows:
            if not math.isinf(tick):
                self.sink.write_offline(rows)
            self.sink.write_online(rows)
        return sum(len(r) for r in rows)

    def _forget(self) -> None:
        """Keep, per partition, the shares a later tick can still need."""
        for parts in self.shares.values():
            older = [s for s in parts if s.tick_s <= self.done_until and not s.final]
            for s in older[:-1]:
                parts.remove(s)


class GroupWorker:
    """One member of the feature workers' consumer group (see the module docstring)."""

    def __init__(
        self,
        log: KafkaEventLog,
        sink: FeatureSink,
        folder: Path,
        config: WorkerConfig | None = None,
        metrics: WorkerMetrics | None = None,
        *,
        session_timeout_ms: int = SESSION_TIMEOUT_MS,
        dedupe_window: int = DEDUPE_WINDOW,
    ) -> None:
        self.log = log
        self.sink = sink
        self.folder = folder
        self.partials = folder / "partials"
        self.config = config or WorkerConfig()
        self.metrics = metrics or WorkerMetrics()
        self.dedupe_window = dedupe_window
        self.user_sink = ViewFilter(sink, [USER_FEATURES.name])
        self.tasks: dict[int, FeatureWorker] = {}
        self.retired: list[
            FeatureWorker
        ] = []  # tasks handed on (their reports, lags with keep_lags)
        self.merger: Merger | None = None
        self.report = WorkerReport()
        # Records no task can use go here (set by the runner); every task shares it.
        self.dead_letter: DeadLetterStore | None = None
        self.tail = KafkaGroupTail(
            log,
            group=self.config.group,
            consumer=self.config.consumer,
            copies=True,
            on_assign=self._assign,
            on_revoke=self._revoke,
            session_timeout_ms=session_timeout_ms,
            join_timeout_s=0.0,  # the first polls join: members of one process join together
        )

    # ------------------------------------------------------------------------ rebalancing
    def checkpoint_path(self, partition: int) -> Path:
        return self.folder / f"partition-{partition}.npz"

    def _assign(self, partitions: list[int]) -> dict[int, int]:
        start = {}
        for p in partitions:
            path = self.checkpoint_path(p)
            agg, offset, recent = FeatureAggregator(), None, None
            if path.exists():
                agg, offset = load_checkpoint(path)
                recent = load_recent_ids(path)
            agg.on_snapshot = partial(self._save_share, p, agg)
            self.tasks[p] = FeatureWorker(
                _PartitionCursor(self, p),
                self.user_sink,
                agg,
                offset,
                checkpoint_path=path,
                config=self.config,
                metrics=self.metrics,
                dedupe=RecentIds(self.dedupe_window, recent),
            )
            self.tasks[p].dead_letter = self.dead_letter
            start[p] = int(offset) + 1 if offset is not None else 0
        if 0 in partitions:
            self.merger = Merger(self.partials, self.log.partitions, self.sink)
        return start

    def _revoke(self, partitions: list[int]) -> None:
        for p in partitions:
            task = self.tasks.pop(p, None)
            if task is not None:
                task.checkpoint()
                if self.config.keep_lags:
                    self.retired.append(task)
        if 0 in partitions:
            self.merger = None

    def _save_share(
        self,
        partition: int,
        agg: FeatureAggregator,
        tick_s: float,
        passed_s: float,
        rows: list[FeatureRows],
    ) -> None:
        changed = {fr.view: fr.keys for fr in rows if fr.view in GLOBAL_VIEWS}
        Partial.capture(agg, partition, tick_s, passed_s, changed).save(self.partials)

    # ------------------------------------------------------------------------ the loop
    def step(self) -> int:
        """Poll once, apply what came to each partition's task, merge; returns events."""
        records = self.tail.poll_records(self.config.max_batch, self.config.max_wait_s)
        by_part: dict[int, list[tuple[str, bytes]]] = {}
        for _, r in records:
            by_part.setdefault(r.partition, []).append((str(r.offset), r.payload))
        for p, recs in by_part.items():
            task = self.tasks.get(p)
            if task is not None:
                rep = task.process(recs)
                self.report.events += rep.events
                self.report.busy_s += rep.busy_s
        if records:
            self.report.batches += 1
        if self.merger is not None:
            self.merger.step()
        return len(records)

    def caught_up(self) -> bool:
        """Every held partition read to its end (as of the last fetch)."""
        return self.tail.merge.settled() and not self.tail.merge.buffered

    def run(
        self,
        *,
        once: bool = False,
        stop: Callable[[], bool] | None = None,
        finish_timeout_s: float = 120.0,
    ) -> WorkerReport:
        """Process until ``stop()``; with ``once``, until the held partitions are drained, then
        ``finish()``. Checkpoints every task on the way and at the end."""
        began = time.monotonic()
        while True:
            n = self.step()
            for task in list(self.tasks.values()):
                task.maybe_checkpoint()
            if stop is not None and stop():
                break
            if once and n == 0 and self.tail.assigned and self.caught_up():
                break
        if once:
            self.finish(finish_timeout_s)
        for task in self.tasks.values():
            task.checkpoint()
        self.report.seconds += time.monotonic() - began
        self.report.checkpoints = sum(t.report.checkpoints for t in self.tasks.values())
        return self.report

    def finish(self, timeout_s: float = 120.0) -> None:
        """End of a bounded run: each task writes its open minute's user rows and its final
        share; the merging member waits (up to ``timeout_s``, serving the group meanwhile) for
        every partition's final share and writes the merged open minute."""
        for p, task in self.tasks.items():
            task.finish()
            agg = task.agg
            if agg.base_s is None:
                continue
            changed = {
                view: [agg_ids[i] for i in agg.changed_since_snapshot(entity).tolist()]
                for view, entity, agg_ids in (
                    ("article_stats", "article", agg.articles.ids),
                    ("topic_stats", "topic", agg.topics.ids),
                    ("region_trending", "region", agg.regions.ids),
                )
            }
            tick = next_tick(agg.watermark_s or 0.0)
            Partial.capture(agg, p, tick, math.inf, changed, final=True).save(self.partials)
        deadline = time.monotonic() + timeout_s
        while self.merger is not None and not math.isinf(self.merger.done_until):
            if time.monotonic() > deadline:
                break
            self.step()  # keeps this member in the group while the others finish
            time.sleep(0.05)

    def close(self) -> None:
        self.tail.close()
