"""``feedstack train`` end to end on a tiny project: the model-selection table, a selected model
whose saved artifacts reproduce their scores exactly, and the measurement record."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from feedstack.cli.main import app
from feedstack.core.spec import write_default_spec
from feedstack.train import artifacts
from feedstack.world import WorldConfig
from tests.factories import world_project

runner = CliRunner()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train")
    world_project(root, WorldConfig(users=400, articles=200, days=1.0, seed=11))
    return root


def test_train_json_selects_a_model_whose_artifacts_reproduce(project: Path) -> None:
    result = runner.invoke(
        app,
        [
            "train", "-p", str(project / "p"), "--json", "--warmup-hours", "6",
            "--eval-hours", "6", "--sizes", "10x3,40x7", "--repeats", "20",
            "--world", str(project / "world"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    doc = orjson.loads(result.stdout)
    table = doc["selection"]
    assert [row["model"] for row in sorted(table, key=lambda r: r["trees"])] == ["10x3", "40x7"]
    for row in table:
        assert {"ndcg@10", "fit_s", "p50_ms", "p99_ms", "fits_budget"} <= set(row)
        assert 0 < row["p50_ms"] <= row["p99_ms"]
    assert doc["selected"] in {"10x3", "40x7"}
    assert doc["budget_ms"] == pytest.approx(2.0)  # 1/60 of the default spec's 120 ms p95
    ev = doc["evaluation"]
    assert ev["requests_with_history"] > 0 and 0 < ev["candidate_recall"] <= 1
    # ALS and the graph filter are offered; the table is always reported, the recipe's own
    # sources always stay, and the evaluation scores exactly the kept ones.
    src = doc["sources"]
    assert set(src["table"]) == {"covisit", "content", "trending", "als", "gfcf"}
    assert {"covisit", "content", "trending"} <= set(src["kept"])
    for name, row in src["table"].items():
        assert 0 <= row["unique_recall"] <= row["recall"] <= 1
        assert row["kept"] == (name in src["kept"])
        if name in ("als", "gfcf"):
            assert row["kept"] == (row["unique_recall"] >= src["min_unique_recall"])
    assert set(ev["candidate_recall_by_source"]) == set(src["kept"])
    assert "logged" in ev["expected_clicks"]  # the world's ground truth was applied
    assert len(doc["examination"]["probs"]) == 10

    model = artifacts.load(Path(doc["model_dir"]))
    assert model.meta["selected"] == doc["selected"]
    assert model.meta["features_version"] == doc["features_version"]
    assert model.meta["feature_names"] == model.ranker.feature_names
    assert all(artifacts.verify(model).values())
    records = list((project / "p" / "measurements").glob("train-*.json"))
    assert len(records) == 1
    assert orjson.loads(records[0].read_bytes())["result"]["selected"] == doc["selected"]


def test_train_without_a_log_is_a_usage_error(tmp_path: Path) -> None:
    write_default_spec(tmp_path / "empty")
    result = runner.invoke(app, ["train", "-p", str(tmp_path / "empty"), "--json"])
    assert result.exit_code == 2
    assert "feedstack ingest" in result.stderr


def test_bad_sizes_are_a_usage_error(project: Path) -> None:
    result = runner.invoke(app, ["train", "-p", str(project / "p"), "--sizes", "ten"])
    assert result.exit_code == 2
    assert "TREESxLEAVES" in result.stderr
