"""The feature backfill on Spark: the same aggregator, one Python task per group of entities.

The aggregator (features/aggregator.py) is sequential over the log, but what it computes for
one entity depends on few things, each of which a group of entities can be given whole:

1. the *tick skeleton*: where in the log the minute ticks (snapshots) and the hourly rebases
   fall. A tick is crossed only by the first event, in log order, of a minute of event time (an
   event crossing a tick has a time past the end of the last crossing's minute, and the minutes
   of crossings strictly increase). So every group is given, as *markers*, the first event of
   every minute, the first event of the log and the event with the latest time: a marker has
   no effect on any entity, crosses a tick exactly where the whole log does, and makes the
   watermark the whole log's. A marker that does not cross in the whole log does not cross in
   the group either (the state before it is the same): any superset of the crossings works.
2. the entity's own events, in log order: every counter cell is a sequence of ``np.add.at``
   additions in log order, scaled at the same rebases, so its float value is the same bits.
3. orders that break ties: the user's top topics break ties by topic index (every group gets
   every ``article_published`` event, which alone assigns topic indices), and trending breaks
   ties by article index (the trending group gets each article's first appearance, see below).

Groups (role, bucket), with ``crc32(key) mod n`` buckets (the same in Spark SQL and Python):

- **users** (user_features): the bucket's users' impressions (item lists dropped: user features
  do not read them), clicks and profiles, plus every article_published event;
- **items** (article_stats, topic_stats): an article goes to the bucket of each topic it was ever
  published with (an unpublished one: the bucket of its id); impressions carry only the items
  routed to the bucket. A bucket owns the topics hashed to it and the articles whose smallest
  route it is: it holds every event of both.
- **trending** (region_trending, one group): every click, profile and article_published, and
  each impression cut to the articles that appear for the first time in the log there, so
  article indices are assigned in the same order as in one pass.

Each group runs ``run_backfill`` (the local backfill itself) over its events, keeps the rows of
the entities it owns, writes its snapshot rows offline (``write_rows_folder``, as the local sink
does) and returns its final rows, which the driver writes online through the same sink. The
partitioning is routing only: no feature is computed in Spark SQL. tests/batch/ proves the rows
equal the local backfill's, to the bit.

Not on Spark: the worker checkpoint (there is no single aggregator state to save); a worker
started after a Spark backfill replays the log from its own checkpoint or from the start.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from feedstack.batch.engine import Engine
from feedstack.features.backfill import BackfillReport, run_backfill
from feedstack.features.rows import FeatureRows, arrow_schema
from feedstack.features.sink import FeatureSink, MemorySink, write_rows_folder

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

USERS, ITEMS, TRENDING = 0, 1, 2
MARKER = "__tick__"  # a type the aggregator ignores: only its time and log position count
SNAPSHOT_S = 60  # features/definitions.py SNAPSHOT_EVERY_S (checked at import below)
_COLUMNS = (
    "type",
    "event_time",
    "user_id",
    "article_id",
    "item_ids",
    "topic",
    "region",
    "publish_time",
)
OUT_SCHEMA = pa.schema(
    [("view", pa.string()), ("kind", pa.string()), ("rows", pa.int64()), ("ipc", pa.binary())]
)


def bucket_of(key: str, n: int) -> int:
    """The bucket of ``key``: ``crc32(utf-8) mod n``, as Spark SQL's ``pmod(crc32(key), n)``."""
    return zlib.crc32(key.encode()) % n


# --------------------------------------------------------------------------- in each task
def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _keep(fr: FeatureRows, owned: Any) -> FeatureRows | None:
    from feedstack.features.rows import take

    idx = [i for i, k in enumerate(fr.keys) if owned(fr.view, k)]
    if not idx:
        return None
    return fr if len(idx) == len(fr) else take(fr, idx)


class _OwnedSink:
    """Keeps the rows of the entities a group owns: offline ones to the folder, online ones
    (the final rows) in memory for the driver."""

    def __init__(self, root: Path, owned: Any) -> None:
        self.root = root
        self.owned = owned
        self.online: list[FeatureRows] = []
        self.offline_rows = 0

    def write_offline(self, rows: Sequence[FeatureRows]) -> None:
        mine = [r for fr in rows if (r := _keep(fr, self.owned)) is not None]
        self.offline_rows += sum(len(r) for r in mine)
        write_rows_folder(self.root, mine)

    def write_online(self, rows: Sequence[FeatureRows]) -> None:
        self.online += [r for fr in rows if (r := _keep(fr, self.owned)) is not None]


def _owner(role: int, bucket: int, n_items: int, table: pa.Table) -> Any:
    """Which (view, key) rows this group owns."""
    if role == USERS:
        return lambda view, key: view == "user_features"
    if role == TRENDING:
        return lambda view, key: view == "region_trending"
    # Items: an article's owner is the smallest bucket it is routed to (its topics' buckets).
    pub = table.filter(pa.compute.equal(table["type"], "article_published"))
    routes: dict[str, set[int]] = {}
    for a, t in zip(pub["article_id"].to_pylist(), pub["topic"].to_pylist(), strict=True):
        routes.setdefault(a, set()).add(bucket_of(t, n_items))

    def owned(view: str, key: str) -> bool:
        if view == "topic_stats":
            return bucket_of(key, n_items) == bucket
        if view == "article_stats":
            return min(routes.get(key) or {bucket_of(key, n_items)}) == bucket
        return False

    return owned


def _batches(table: pa.Table, batch: int = 50_000) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    for start in range(0, table.num_rows, batch):
        part = table.slice(start, batch)
        yield str(start + part.num_rows), part.to_pylist()


def run_group(table: pa.Table, *, root: str, n_items: int) -> pa.Table:
    """One group's backfill (the function Spark runs per group; also callable directly)."""
    role, bucket = int(table["role"][0].as_py()), int(table["bucket"][0].as_py())
    table = table.sort_by([("p0", "ascending"), ("p1", "ascending"), ("real", "ascending")])
    owned = _owner(role, bucket, n_items, table)
    sink = _OwnedSink(Path(root), owned)
    events = table.select(list(_COLUMNS))
    run_backfill(_batches(events), sink)
    out: dict[str, list[Any]] = {"view": [], "kind": [], "rows": [], "ipc": []}
    by_view: dict[str, list[pa.Table]] = {}
    for fr in sink.online:
        by_view.setdefault(fr.view, []).append(fr.to_arrow())
    for view, parts in by_view.items():
        t = pa.concat_tables(parts)
        out["view"].append(view)
        out["kind"].append("online")
        out["rows"].append(t.num_rows)
        out["ipc"].append(_ipc(t))
    out["view"].append("")
    out["kind"].append("offline")
    out["rows"].append(sink.offline_rows)
    out["ipc"].append(b"")
    return pa.Table.from_pydict(out, schema=OUT_SCHEMA)


def _group_fn(root: str, n_items: int) -> Callable[[pa.Table], pa.Table]:
    # Spark picks the calling convention from the type hints: Table in, Table out.
    def fn(table: pa.Table) -> pa.Table:
        return run_group(table, root=root, n_items=n_items)

    return fn


# --------------------------------------------------------------------------- the plan, in SQL
def read_events(engine: Engine, events_dir: Path) -> DataFrame:
    """The offline copy (``events/date=*/part-*.parquet``) with its log position (p0, p1)."""
    from pyspark.sql import functions as F

    spark = engine.session()
    df = (
        spark.read.option("basePath", str(events_dir))
        .parquet(str(events_dir / "date=*" / "part-*.parquet"))
        .drop("date")
    )
    parts = F.split(F.col("log_offset"), "-")
    second = F.try_element_at(parts, F.lit(2)).cast("long")
    return df.withColumn("p0", parts.getItem(0).cast("long")).withColumn(
        "p1", F.coalesce(second, F.lit(0).cast("long"))
    )


def route(df: DataFrame, n_users: int, n_items: int) -> DataFrame:
    """Every (role, bucket) group's events and markers, columns role, bucket, p0, p1, real and
    the ones the aggregator reads."""
    from pyspark.sql import functions as F

    cols = [F.col(c) for c in _COLUMNS]

    def tagged(frame: DataFrame, role: int, bucket: Any) -> DataFrame:
        return frame.select(
            F.lit(role).alias("role"),
            bucket.cast("int").alias("bucket"),
            "p0",
            "p1",
            F.lit(1).alias("real"),
            *cols,
        )

    def hashed(col: str, n: int) -> Any:
        return F.pmod(F.crc32(F.col(col).cast("binary")), F.lit(n))

    ev = df.select("p0", "p1", *_COLUMNS)
    kind = F.col("type")
    published = ev.filter(kind == "article_published")
    imps = ev.filter(kind == "impression")
    clicks = ev.filter(kind == "click")
    profiles = ev.filter(kind == "user_profile")
    no_items = F.array().cast("array<string>")

    # users: own impressions (no items), clicks, profiles; every article_published.
    user_ev = tagged(
        ev.filter(kind.isin("impression", "click", "user_profile")).withColumn(
            "item_ids", F.when(kind == "impression", no_items).otherwise(F.col("item_ids"))
        ),
        USERS,
        hashed("user_id", n_users),
    )
    buckets = df.sparkSession.range(n_users).select(F.col("id").cast("int").alias("b"))
    user_pub = tagged(published.crossJoin(buckets), USERS, F.col("b"))

    # items: each occurrence of an article routed to its topics' buckets.
    topics = published.select("article_id", "topic").distinct()
    routes = topics.select("article_id", hashed("topic", n_items).alias("b")).distinct()
    shown = imps.select("p0", "p1", F.posexplode("item_ids").alias("idx", "article_id"))
    routed_items = (
        shown.join(routes, "article_id", "left")
        .withColumn("b", F.coalesce(F.col("b"), hashed("article_id", n_items)))
        .groupBy("b", "p0", "p1")
        .agg(F.sort_array(F.collect_list(F.struct("idx", "article_id"))).alias("s"))
        .select("b", "p0", "p1", F.col("s.article_id").alias("routed"))
    )
    item_imps = (
        imps.join(routed_items, ["p0", "p1"]).withColumn("item_ids", F.col("routed")).drop("routed")
    )
    item_single = (
        ev.filter(kind.isin("click", "article_published"))
        .join(routes, "article_id", "left")
        .withColumn("b", F.coalesce(F.col("b"), hashed("article_id", n_items)))
    )
    item_ev = tagged(item_imps.unionByName(item_single), ITEMS, F.col("b"))

    # trending: clicks, profiles, article_published, and each article's first appearance.
    occ = shown.unionByName(
        ev.filter(kind.isin("click", "article_published")).select(
            "p0", "p1", F.lit(0).alias("idx"), "article_id"
        )
    )
    first = occ.groupBy("article_id").agg(F.min(F.struct("p0", "p1", "idx")).alias("f"))
    first_items = (
        first.select("article_id", "f.p0", "f.p1", "f.idx")
        .groupBy("p0", "p1")
        .agg(F.sort_array(F.collect_list(F.struct("idx", "article_id"))).alias("s"))
        .select("p0", "p1", F.col("s.article_id").alias("firsts"))
    )
    trend_imps = (
        imps.join(first_items, ["p0", "p1"]).withColumn("item_ids", F.col("firsts")).drop("firsts")
    )
    trend_ev = tagged(
        trend_imps.unionByName(clicks).unionByName(profiles).unionByName(published),
        TRENDING,
        F.lit(0),
    )

    # markers: the first event of every minute, and the latest event, for every group.
    minute = F.floor(F.unix_micros(F.col("event_time")) / F.lit(SNAPSHOT_S * 1_000_000))
    firsts = ev.groupBy(minute.alias("m")).agg(F.min(F.struct("p0", "p1", "event_time")).alias("f"))
    latest = ev.orderBy(F.col("event_time").desc(), "p0", "p1").limit(1)
    marks = firsts.select("f.p0", "f.p1", "f.event_time").unionByName(
        latest.select("p0", "p1", "event_time")
    )
    # Every group gets the markers; the groups are known without looking at the events (a
    # group with no events of its own returns no rows).
    spark = df.sparkSession
    groups = (
        spark.range(n_users)
        .select(F.lit(USERS).alias("role"), F.col("id").cast("int").alias("bucket"))
        .unionByName(
            spark.range(n_items).select(
                F.lit(ITEMS).alias("role"), F.col("id").cast("int").alias("bucket")
            )
        )
        .unionByName(spark.range(1).select(F.lit(TRENDING).alias("role"), F.lit(0).alias("bucket")))
    )
    null = {c: F.lit(None) for c in _COLUMNS if c not in ("type", "event_time")}
    marker_ev = groups.crossJoin(marks).select(
        "role",
        "bucket",
        "p0",
        "p1",
        F.lit(0).alias("real"),
        F.lit(MARKER).alias("type"),
        "event_time",
        *[null[c].cast(ev.schema[c].dataType).alias(c) for c in _COLUMNS[2:]],
    )
    return (
        user_ev.unionByName(user_pub)
        .unionByName(item_ev)
        .unionByName(trend_ev)
        .unionByName(marker_ev)
    )


def spark_backfill(
    engine: Engine, events_dir: Path, sink: FeatureSink, offline_root: Path
) -> BackfillReport:
    """Backfill on Spark: snapshot rows under ``offline_root/<view>/`` (written by the tasks),
    every entity's final row through ``sink.write_online`` (on the driver)."""
    began = time.perf_counter()
    df = read_events(engine, events_dir).cache()
    n_events = df.count()
    report = BackfillReport(events=n_events)
    if n_events == 0:
        return report
    n = engine.n_partitions()
    n_users, n_items = n, max(1, n // 2)
    routed = route(df, n_users, n_items)
    fn = _group_fn(str(offline_root), n_items)
    out_schema = "view string, kind string, rows long, ipc binary"
    result = routed.groupBy("role", "bucket").applyInArrow(fn, out_schema)
    online: dict[str, list[pa.Table]] = {}
    for row in result.toLocalIterator():
        if row["kind"] == "offline":
            report.snapshot_rows += int(row["rows"])
        elif row["rows"]:
            table = pa.ipc.open_stream(row["ipc"]).read_all()
            online.setdefault(row["view"], []).append(table)
        report.batches += 1
    df.unpersist()
    final = [_rows(view, pa.concat_tables(parts)) for view, parts in online.items()]
    if final:
        sink.write_online(final)
    report.online_rows = sum(len(r) for r in final)
    report.seconds = time.perf_counter() - began
    return report


def _rows(view: str, table: pa.Table) -> FeatureRows:
    """A view's Arrow rows (``FeatureRows.to_arrow``) back to FeatureRows."""
    schema = arrow_schema(view)
    entity, ts = schema.names[0], schema.names[1]
    as_of = table[ts].cast(pa.int64()).to_numpy().astype(np.float64) / 1e6
    cols = {name: table[name].combine_chunks() for name in schema.names[2:]}
    return FeatureRows(view, table[entity].to_pylist(), as_of, cols)


def local_rows(sink: MemorySink) -> dict[str, dict[str, dict[str, Any]]]:
    """The online rows a MemorySink holds (tests compare engines with it)."""
    return sink.online
