"""Spark = local: on the same small log, the batch jobs on Spark ``local[2]`` give the local
engine's rows and lists, to the bit (the same code runs per partition)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from feedstack.batch.backfill import spark_backfill
from feedstack.batch.engine import Engine
from feedstack.batch.training_rows import write_training_rows
from feedstack.features.backfill import parquet_batches, run_backfill
from feedstack.features.sink import FolderSink
from feedstack.features.training import build_training_table
from feedstack.storage.offline import ParquetOfflineStore
from feedstack.world import WorldConfig
from tests.factories import world_project

pytestmark = pytest.mark.slow  # one Spark session for the run; each job a few seconds
VIEWS = ("article_stats", "user_features", "topic_stats", "region_trending")


def _rows(folder: Path) -> pa.Table:
    table = ds.dataset(folder, format="parquet").to_table()
    key = table.schema.names[0]
    return table.sort_by([(key, "ascending"), ("event_timestamp", "ascending")])


@pytest.fixture(scope="module")
def backfilled(
    tmp_path_factory: pytest.TempPathFactory, spark_engine: Engine
) -> tuple[Path, FolderSink, FolderSink]:
    root = tmp_path_factory.mktemp("spark-backfill")
    world_project(root, WorldConfig(users=300, articles=60, days=0.3, seed=3))
    store = ParquetOfflineStore(root / "p" / "data" / "offline")
    local = FolderSink(root / "local")
    run_backfill(parquet_batches(store), local)
    spark = FolderSink(root / "spark")
    report = spark_backfill(spark_engine, store.events_dir, spark, root / "spark")
    assert report.events > 0 and report.snapshot_rows > 0
    return root, local, spark


def test_backfill_rows_equal_local(backfilled: tuple[Path, FolderSink, FolderSink]) -> None:
    root, local, spark = backfilled
    for view in VIEWS:
        want, got = _rows(root / "local" / view), _rows(root / "spark" / view)
        assert want.num_rows > 0
        assert got.equals(want), view  # offline snapshot rows, bit for bit
    # Online: every entity's final row, as the worker leaves the store.
    assert set(spark.online) == set(local.online)
    for view, rows in local.online.items():
        assert spark.online[view] == rows, view


def test_training_rows_equal_local(
    backfilled: tuple[Path, FolderSink, FolderSink], spark_engine: Engine
) -> None:
    root = backfilled[0]
    events = root / "p" / "data" / "offline" / "events"
    want = build_training_table(
        str(events / "*" / "*.parquet"), root / "local" / VIEWS[0], root / "local" / VIEWS[1]
    )
    result = write_training_rows(
        spark_engine, events, root / "spark" / VIEWS[0], root / "spark" / VIEWS[1], root / "rows"
    )
    assert result["rows"] == want.num_rows > 0
    got = ds.dataset(root / "rows", format="parquet").to_table()
    keys = [("request_id", "ascending"), ("position", "ascending")]
    got = got.select(want.column_names).sort_by(keys)
    assert got.schema == want.schema
    assert got.equals(want.sort_by(keys))
