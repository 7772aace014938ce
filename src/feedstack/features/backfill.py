"""The backfill: the stream worker's aggregator over the whole log in one pass.

Reads the event log (or its offline Parquet copy, sorted back into log order) in large batches,
writes every snapshot row offline, and at the end writes each entity's *final* row online: its
snapshot row of the last minute in which it changed, or, if it changed in the minute still open,
its row as of the watermark. These are exactly the rows a worker leaves in the online store after
draining the same log and calling ``finish()`` (worker.py, "Deterministic online values"): same
code, same rows, to the bit. With ``checkpoint_path`` it saves a checkpoint a worker can resume
from, so a new deployment backfills once and then streams.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from feedstack.features.aggregator import FeatureAggregator
from feedstack.features.checkpoint import save_checkpoint
from feedstack.features.rows import FeatureRows, concat, take
from feedstack.features.sink import FeatureSink
from feedstack.features.ticks import discard_online, open_segment_rows
from feedstack.storage.deadletter import Rejection
from feedstack.storage.eventlog import EventLog
from feedstack.storage.offline import ParquetOfflineStore
from feedstack.storage.quarantine import parse_stream

Batch = tuple[str, list[dict[str, Any]]]  # (offset of the last event, events in log order)


@dataclass
class BackfillReport:
    events: int = 0
    batches: int = 0
    seconds: float = 0.0
    snapshot_rows: int = 0
    online_rows: int = 0
    offset: str | None = None
    checkpoint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["events_per_s"] = round(self.events / self.seconds, 1) if self.seconds > 0 else None
        return d


def log_batches(
    log: EventLog,
    after: str | None = None,
    batch: int = 50_000,
    on_rejected: Callable[[list[Rejection]], object] | None = None,
) -> Iterator[Batch]:
    """The log after ``after``, parsed, in batches; records the feature code cannot use are
    left out and handed to ``on_rejected`` (the dead-letter store), never stopping the pass."""
    while records := log.read_raw(after, batch):
        after = records[-1][0]
        events, rejected = parse_stream(records, "features backfill")
        if rejected and on_rejected is not None:
            on_rejected(rejected)
        yield after, events


def offset_key(offset: str) -> tuple[int, ...]:
    """Sort key of a log offset: SQLite sequence numbers, Redis ``ms-seq`` ids and Kafka
    ``sum@vector`` positions (whose sum grows along the log's merge order) alike."""
    if "@" in offset:
        return (int(offset.partition("@")[0]),)
    return tuple(int(part) for part in offset.split("-"))


def parquet_batches(store: ParquetOfflineStore, batch: int = 50_000) -> Iterator[Batch]:
    """The offline copy in log order (parts are split by date, so sort by ``log_offset``).
    Times come back as aware datetimes, which the aggregator reads like the log's ISO strings."""
    table = store.read_table()
    if table.num_rows == 0:
        return
    offsets = table["log_offset"].to_pylist()
    order = sorted(range(len(offsets)), key=lambda i: offset_key(offsets[i]))
    table = table.take(order).drop_columns([c for c in ("date",) if c in table.column_names])
    for start in range(0, table.num_rows, batch):
        part = table.slice(start, batch)
        yield part["log_offset"][-1].as_py(), part.to_pylist()


def run_backfill(
    batches: Iterable[Batch],
    sink: FeatureSink,
    *,
    checkpoint_path: Path | None = None,
    agg: FeatureAggregator | None = None,
) -> tuple[FeatureAggregator, BackfillReport]:
    """One pass: snapshot rows offline as they come, final rows online at the end."""
    agg = agg if agg is not None else FeatureAggregator()
    report = BackfillReport()
    began = time.perf_counter()
    latest: dict[str, LatestRows] = {}
    for offset, events in batches:
        snapshots = agg.apply(events)
        if snapshots:
            sink.write_offline(snapshots)
            report.snapshot_rows += sum(len(r) for r in snapshots)
            for fr in snapshots:
                latest.setdefault(fr.view, LatestRows()).add(fr)
        report.events += len(events)
        report.batches += 1
        report.offset = offset
    for fr in open_segment_rows(agg):
        latest.setdefault(fr.view, LatestRows()).add(fr)
    final = [acc.rows() for acc in latest.values() if len(acc)]
    if final:
        sink.write_online(final)
    report.online_rows = sum(len(r) for r in final)
    # The worker leaves no online flag set after a batch; neither does the backfill, so a worker
    # resuming from this checkpoint continues exactly as if it had streamed the log itself.
    discard_online(agg)
    if checkpoint_path is not None:
        save_checkpoint(agg, report.offset, checkpoint_path)
        report.checkpoint = str(checkpoint_path)
    report.seconds = time.perf_counter() - began
    return agg, report


def backfill_log(
    log: EventLog,
    sink: FeatureSink,
    *,
    checkpoint_path: Path | None = None,
    batch: int = 50_000,
) -> tuple[FeatureAggregator, BackfillReport]:
    return run_backfill(log_batches(log, None, batch), sink, checkpoint_path=checkpoint_path)


# ----------------------------------------------------------------------- rows, newest per key
def _by_view(rows: Sequence[FeatureRows]) -> dict[str, list[FeatureRows]]:
    out: dict[str, list[FeatureRows]] = {}
    for fr in rows:
        out.setdefault(fr.view, []).append(fr)
    return out


class LatestRows:
    """The newest row per key of one view (newest as-of wins, ties: the later row), as the
    online store keeps them; O(new rows) per ``add``, compacted now and then."""

    def __init__(self, slack: int = 100_000) -> None:
        self.slack = slack  # superseded rows held beyond 3x the live ones before compacting
        self.parts: list[FeatureRows] = []
        self.best: dict[str, tuple[float, int, int]] = {}  # key -> (as-of, part, row)
        self._held = 0  # rows in self.parts

    def __len__(self) -> int:
        return len(self.best)

    def add(self, fr: FeatureRows) -> None:
        if not len(fr):
            return
        p = len(self.parts)
        self.parts.append(fr)
        self._held += len(fr)
        best = self.best
        for i, (key, t) in enumerate(zip(fr.keys, fr.as_of_s.tolist(), strict=True)):
            old = best.get(key)
            if old is None or old[0] <= t:
                best[key] = (t, p, i)
        if self._held > 4 * len(best) + self.slack:  # most rows held are superseded: drop them
            self._compact()

    def _compact(self) -> None:
        rows = self.rows()
        self.parts, self._held = [rows], len(rows)
        times = rows.as_of_s.tolist()
        self.best = {k: (t, 0, i) for i, (k, t) in enumerate(zip(rows.keys, times, strict=True))}

    def rows(self) -> FeatureRows:
        """One FeatureRows: the newest row of every key, in the order they were added."""
        picks: dict[int, list[int]] = {}
        for _, p, i in self.best.values():
            picks.setdefault(p, []).append(i)
        pieces = [take(self.parts[p], sorted(picks[p])) for p in sorted(picks)]
        return concat(pieces) if len(pieces) > 1 else pieces[0]


def latest_rows(rows: Sequence[FeatureRows]) -> list[FeatureRows]:
    """One row per (view, key), see LatestRows; one FeatureRows per view, in order of first
    appearance."""
    out = []
    for parts in _by_view(rows).values():
        acc = LatestRows()
        for fr in parts:
            acc.add(fr)
        if len(acc):
            out.append(acc.rows())
    return out
