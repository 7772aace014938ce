"""The ranker's point-in-time training rows on Spark: features/training.py's three steps, each
run per partition on the rows that share its key, then written as Parquet.

1. ``labeled_items`` per request-id bucket: an impression and its clicks, dwells and hides share
   the request id, so every label is in the same partition as its impression;
2. ``join_articles`` per article bucket (cogrouped with the article feature rows of the bucket):
   the ASOF join needs only the article's own rows;
3. ``join_users`` per user bucket (cogrouped with the user feature rows), then the decay to the
   impression time, which is row by row.

Every step is the local function itself (DuckDB over the partition's Arrow tables): the rows
equal ``build_training_table``'s to the bit, in another order (each partition is sorted by event
time, request and position; the local table is sorted as a whole). tests/batch/ proves it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from feedstack.batch.backfill import read_events
from feedstack.batch.engine import Engine
from feedstack.features.rows import arrow_schema
from feedstack.features.training import (
    _connect,
    join_articles,
    join_users,
    labeled_items,
    load_table,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

_EVENT_COLUMNS = (
    "type",
    "request_id",
    "user_id",
    "event_time",
    "model_version",
    "article_id",
    "item_ids",
    "dwell_ms",
)


# ------------------------------------------------------------------ the steps, per partition
def _labels(start_s: float | None, end_s: float | None) -> Callable[[pa.Table], pa.Table]:
    def fn(table: pa.Table) -> pa.Table:
        con = _connect()
        try:
            con.register("ev", table.select(list(_EVENT_COLUMNS)))
            return labeled_items(con, "ev", start_s=start_s, end_s=end_s)
        finally:
            con.close()

    return fn


def _articles(items: pa.Table, rows: pa.Table) -> pa.Table:
    con = _connect()
    try:
        load_table(con, "items", items.drop_columns(["b"]))
        load_table(con, "rows", rows.drop_columns(["b"]))
        return join_articles(con, "items", "rows")
    finally:
        con.close()


def _users(items: pa.Table, rows: pa.Table) -> pa.Table:
    con = _connect()
    try:
        load_table(con, "items", items.drop_columns(["b"]))
        load_table(con, "rows", rows.drop_columns(["b"]))
        return join_users(con, "items", "rows")
    finally:
        con.close()


def _empty_schemas(events: pa.Schema) -> tuple[pa.Schema, pa.Schema, pa.Schema]:
    """The schema of each step's output: each step run on empty input."""
    items = _labels(None, None)(events.empty_table())
    con = _connect()
    try:
        load_table(con, "items", items)
        load_table(con, "rows", arrow_schema("article_stats").empty_table())
        with_articles = join_articles(con, "items", "rows")
        load_table(con, "with_articles", with_articles)
        load_table(con, "urows", arrow_schema("user_features").empty_table())
        final = join_users(con, "with_articles", "urows")
    finally:
        con.close()
    return items.schema, with_articles.schema, final.schema


def _spark_schema(schema: pa.Schema) -> Any:
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def _one(schema: pa.Schema, fn: Callable[[pa.Table], pa.Table]) -> Callable[[pa.Table], pa.Table]:
    def step(table: pa.Table) -> pa.Table:
        return fn(table).select(schema.names).cast(schema)

    return step


def _two(
    schema: pa.Schema, fn: Callable[[pa.Table, pa.Table], pa.Table]
) -> Callable[[pa.Table, pa.Table], pa.Table]:
    def step(left: pa.Table, right: pa.Table) -> pa.Table:
        return fn(left, right).select(schema.names).cast(schema)

    return step


# --------------------------------------------------------------------------- the Spark plan
def training_rows_frame(
    engine: Engine,
    events_dir: Path,
    article_rows: Path,
    user_rows: Path,
    *,
    start_s: float | None = None,
    end_s: float | None = None,
) -> DataFrame:
    """The training rows as a Spark DataFrame (nothing runs until it is written or read)."""
    from pyspark.sql import functions as F

    spark = engine.session()
    n = engine.n_partitions()
    events = read_events(engine, events_dir)
    events = events.filter(
        F.col("type").isin("impression", "click", "dwell", "hide") & F.col("request_id").isNotNull()
    ).select(*_EVENT_COLUMNS)
    ev_schema = pa.schema([_arrow_field(events, c) for c in _EVENT_COLUMNS])
    s_items, s_articles, s_final = _empty_schemas(ev_schema)

    def bucket(col: str) -> Any:
        return F.pmod(F.crc32(F.col(col).cast("binary")), F.lit(n)).alias("b")

    items = events.groupBy(bucket("request_id")).applyInArrow(
        _one(s_items, _labels(start_s, end_s)), _spark_schema(s_items)
    )
    arts = spark.read.parquet(str(article_rows / "*.parquet"))
    with_articles = (
        items.withColumn("b", bucket("article_id"))
        .groupBy("b")
        .cogroup(arts.withColumn("b", bucket("article_id")).groupBy("b"))
        .applyInArrow(_two(s_articles, _articles), _spark_schema(s_articles))
    )
    users = spark.read.parquet(str(user_rows / "*.parquet"))
    return (
        with_articles.withColumn("b", bucket("user_id"))
        .groupBy("b")
        .cogroup(users.withColumn("b", bucket("user_id")).groupBy("b"))
        .applyInArrow(_two(s_final, _users), _spark_schema(s_final))
    )


def _arrow_field(df: DataFrame, name: str) -> pa.Field:
    from pyspark.sql.pandas.types import to_arrow_type

    return pa.field(name, to_arrow_type(df.schema[name].dataType, timezone="UTC"))


def write_training_rows(
    engine: Engine,
    events_dir: Path,
    article_rows: Path,
    user_rows: Path,
    out: Path,
    *,
    start_s: float | None = None,
    end_s: float | None = None,
) -> dict[str, Any]:
    """Write the training rows as a folder of Parquet files; returns rows and seconds."""
    began = time.perf_counter()
    frame = training_rows_frame(
        engine, events_dir, article_rows, user_rows, start_s=start_s, end_s=end_s
    )
    frame.write.mode("overwrite").parquet(str(out))
    rows = engine.session().read.parquet(str(out)).count()
    return {"rows": int(rows), "out": str(out), "seconds": round(time.perf_counter() - began, 3)}
