"""Point-in-time training data: labels are right and no later event ever leaks into a row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feedstack.core.spec import load_spec
from feedstack.features.aggregator import FeatureAggregator
from feedstack.features.training import build_training_table
from feedstack.ingest.pipeline import Ingestor
from feedstack.ingest.readers import read_jsonl
from feedstack.world import WorldConfig
from tests.factories import world_project as make_world_project


def _features(project: Path, out: Path) -> None:
    """Offline feature rows of the project's whole log, one Parquet file per view."""
    ing = Ingestor.from_spec(load_spec(project), project)
    events = [orjson.loads(p) for _, p in ing.log.read_raw(None, 10**7)]
    ing.close()
    by_view: dict[str, list[pa.Table]] = {}
    for rows in FeatureAggregator().apply(events):
        by_view.setdefault(rows.view, []).append(rows.to_arrow())
    for view, tables in by_view.items():
        (out / view).mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.concat_tables(tables), out / view / "rows.parquet")


def _table(project: Path, feats: Path) -> pa.Table:
    return build_training_table(
        str(project / "data" / "offline" / "events" / "*" / "*.parquet"),
        feats / "article_stats",
        feats / "user_features",
    )


@pytest.fixture(scope="module")
def world_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pit")
    make_world_project(root, WorldConfig(users=300, articles=120, days=0.5, seed=3))
    return root


def test_one_row_per_shown_item_with_labels(world_project: Path) -> None:
    project, feats = world_project / "p", world_project / "feats"
    _features(project, feats)
    table = _table(project, feats)
    summary = orjson.loads((world_project / "world" / "world.json").read_bytes())["summary"]
    assert table.num_rows == summary["counts"]["impression"] * 10
    # Every click with a request id is a label on exactly one row.
    assert int(np.sum(table["clicked"].to_numpy())) == summary["counts"]["click"]
    clicked = table.filter(pa.compute.equal(table["clicked"], 1))
    assert np.all(clicked["dwell_ms"].to_numpy() > 0)
    # Features as of the impression: the article's as-of time never passes the impression time.
    as_of = table["a_as_of_s"].to_numpy(zero_copy_only=False)
    t = table["event_time_s"].to_numpy()
    known = ~np.isnan(as_of)
    assert known.mean() > 0.9
    assert np.all(as_of[known] <= t[known])


def test_a_planted_later_event_never_leaks_into_an_earlier_row(
    world_project: Path, tmp_path: Path
) -> None:
    project = world_project / "p"
    before = _table(project, world_project / "feats")
    # Plant a burst of clicks on one article in the middle of the log.
    times = before["event_time_s"].to_numpy()
    plant_s = float(np.median(times))
    article = before["article_id"][len(times) // 2].as_py()
    plant = datetime.fromtimestamp(plant_s, UTC)
    burst = [
        {
            "type": "click",
            "event_id": f"planted-{i}",
            "event_time": (plant + timedelta(milliseconds=i)).isoformat(),
            "user_id": "planted-user",
            "article_id": article,
        }
        for i in range(200)
    ]
    # The burst goes into the log at its place in time (a new project: world + burst, by time).
    from feedstack.core.spec import write_default_spec

    lines = (world_project / "world" / "events.jsonl").read_bytes().splitlines()
    merged = sorted(
        [orjson.loads(x) for x in lines] + burst,
        key=lambda e: datetime.fromisoformat(e["event_time"]),
    )
    path = tmp_path / "merged.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in merged))
    write_default_spec(tmp_path / "p2")
    ing = Ingestor.from_spec(load_spec(tmp_path / "p2"), tmp_path / "p2")
    ing.ingest(read_jsonl(path))
    ing.close()
    _features(tmp_path / "p2", tmp_path / "feats")
    after = _table(tmp_path / "p2", tmp_path / "feats")
    assert after.num_rows == before.num_rows
    earlier = times < plant_s
    for col in ("a_clicks_5m", "a_clicks_1h", "a_clicks_24h", "a_ctr_1h", "u_clicks_24h"):
        np.testing.assert_array_equal(
            after[col].to_numpy()[earlier], before[col].to_numpy()[earlier], err_msg=col
        )
    # ... while rows of that article a minute after the burst do see it.
    later = (times > plant_s + 60) & (
        before["article_id"].to_numpy(zero_copy_only=False) == article
    )
    assert later.any()
    assert np.all(
        after["a_clicks_24h"].to_numpy()[later] > before["a_clicks_24h"].to_numpy()[later]
    )
