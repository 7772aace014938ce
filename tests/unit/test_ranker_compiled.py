"""The compiled ranker (lleaves) serves the same scores and the same ranked order as LightGBM's own
predict, on 500-row blocks with missing values, and its compiled object is reused by hash."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from feedstack.core.errors import DataError
from feedstack.models.rank.compiled import CompiledRanker, compile_ranker
from feedstack.models.rank.lgbm import Ranker, RankerTrainer

FEATURES = 12


@pytest.fixture(scope="module")
def ranker() -> Ranker:
    rng = np.random.default_rng(0)
    groups, size = 300, 20
    x = rng.normal(size=(groups * size, FEATURES)).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = np.nan  # LightGBM's "missing": the default branch
    signal = np.nan_to_num(x[:, 0]) + 0.5 * np.nan_to_num(x[:, 3]) * np.nan_to_num(x[:, 7])
    y = (signal + rng.normal(0, 0.3, signal.size) > 1.0).astype(np.float32)
    trainer = RankerTrainer(
        params={"num_leaves": 15, "min_data_in_leaf": 10}, rounds=60, early_stopping=0,
        num_threads=1,
    )  # fmt: skip
    names = [f"f{j}" for j in range(FEATURES)]
    return trainer.fit(x, y, np.full(groups, size, dtype=np.int64), names)


def blocks(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.normal(size=(500, FEATURES)).astype(np.float32)
        x[rng.random(x.shape) < 0.1] = np.nan
        x[rng.random(x.shape) < 0.02] = 0.0  # exact zeros and ties with thresholds' neighbours
        out.append(x)
    return out


def test_same_scores_and_same_ranked_order(ranker: Ranker, tmp_path: Path) -> None:
    compiled = compile_ranker(ranker, tmp_path)
    assert isinstance(compiled, CompiledRanker) and compiled.backend == "lleaves"
    for x in blocks(8, seed=1):
        ours, theirs = compiled.predict(x), ranker.predict(x, num_threads=1)
        assert ours.dtype == theirs.dtype == np.float32
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)
        idx = np.arange(x.shape[0])
        # The served order: by score, ties by first-stage position (serve/pipeline.py).
        assert np.array_equal(np.lexsort((idx, -ours)), np.lexsort((idx, -theirs)))


def test_rows_that_do_not_fit_the_model_are_our_data_error(ranker: Ranker, tmp_path: Path) -> None:
    """As LightGBM's predict: lists that do not fit the model are our stored data (serving
    degrades to ``model_mismatch``), never the caller's fault."""
    with pytest.raises(DataError, match=f"expects {FEATURES} features"):
        compile_ranker(ranker, tmp_path).predict(np.zeros((3, FEATURES - 1), dtype=np.float32))


def test_compiled_object_is_cached_by_model_hash(ranker: Ranker, tmp_path: Path) -> None:
    first = CompiledRanker(ranker, tmp_path)
    assert first.cache_path is not None and first.cache_path.exists()
    stamp = first.cache_path.stat().st_mtime_ns
    again = CompiledRanker(ranker, tmp_path)  # loads the object: no second compile
    assert again.cache_path == first.cache_path and again.cache_path.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.cache_path.name]  # no temp files left
    x = blocks(1, seed=2)[0]
    np.testing.assert_array_equal(again.predict(x), first.predict(x))
    assert again.feature_names == ranker.feature_names and again.params == ranker.params


def test_saving_a_compiled_ranker_saves_the_lightgbm_model(ranker: Ranker, tmp_path: Path) -> None:
    compile_ranker(ranker, tmp_path / "cache").save(tmp_path / "r")
    x = blocks(1, seed=3)[0]
    np.testing.assert_array_equal(Ranker.load(tmp_path / "r").predict(x), ranker.predict(x))


def test_backends_side_by_side_agree(ranker: Ranker) -> None:
    """``feedstack bench rankers``' comparison: every backend on the same blocks, scores equal to
    LightGBM's (as served, float32) and the same ranked order on every block."""
    from feedstack.bench.rankers import measure_backends

    res = measure_backends(ranker, blocks=25, seed=4)
    assert {"lightgbm", "lightgbm_no_shape_check", "lleaves"} <= set(res["backends"])
    for name, b in res["backends"].items():
        assert b["max_abs_diff"] <= 1e-6, name
        assert b["same_order_blocks"] == "25/25", name
    assert res["backends"]["lleaves"]["compile_from_cache_s"] is not None
    assert res["fastest"] in res["backends"]
