"""The LambdaRank re-ranker: learns a planted signal, round-trips exactly, rejects bad rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from feedstack.core.errors import DataError, InputError
from feedstack.models.rank.lgbm import Ranker, RankerTrainer, group_ndcg

NAMES = ["signal", "noise"]


def planted(groups: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows whose label is 1 for the top-2 'signal' values of each group; 'noise' is noise."""
    rng = np.random.default_rng(seed)
    x = rng.random((groups * size, 2)).astype(np.float32)
    signal = x[:, 0].reshape(groups, size)
    labels = (signal >= np.sort(signal, axis=1)[:, -2:-1]).astype(np.float32).ravel()
    return x, labels, np.full(groups, size, dtype=np.int64)


def small_trainer(**kw: object) -> RankerTrainer:
    params = {"min_data_in_leaf": 5, "num_leaves": 7}
    return RankerTrainer(params=params, rounds=30, early_stopping=10, num_threads=1, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def ranker() -> Ranker:
    x, y, g = planted(groups=120, size=10, seed=0)
    return small_trainer().fit(x, y, g, NAMES)


def test_learns_the_planted_signal(ranker: Ranker) -> None:
    x, y, _g = planted(groups=50, size=10, seed=1)
    scores = ranker.predict(x).reshape(50, 10)
    top2 = np.argsort(-scores, axis=1)[:, :2]
    hit = np.take_along_axis(y.reshape(50, 10), top2, axis=1)
    assert hit.mean() > 0.8  # chance: 0.2
    imp = ranker.importance()
    assert imp["signal"] > imp["noise"]
    assert ranker.metrics["train_groups"] + ranker.metrics["valid_groups"] == 120


def test_save_load_reproduces_scores_exactly(ranker: Ranker, tmp_path: Path) -> None:
    ranker.save(tmp_path / "r")
    loaded = Ranker.load(tmp_path / "r")
    x, _, _ = planted(groups=20, size=10, seed=2)
    np.testing.assert_array_equal(loaded.predict(x), ranker.predict(x))
    assert loaded.feature_names == NAMES
    assert loaded.data_hash == ranker.data_hash
    assert loaded.metrics == ranker.metrics


def test_predict_threads_and_batches_agree(ranker: Ranker) -> None:
    x, _, _ = planted(groups=30, size=10, seed=3)
    whole = ranker.predict(x, num_threads=2)
    parts = np.concatenate([ranker.predict(x[i : i + 7], num_threads=1) for i in range(0, 300, 7)])
    np.testing.assert_array_equal(whole, parts)


def test_groups_without_positives_are_dropped() -> None:
    x, y, g = planted(groups=60, size=10, seed=4)
    y[:100] = 0.0  # the first 10 groups lose their positives
    g[-1], g[-2] = 20, 0  # an empty group (a user without candidates) is allowed
    r = small_trainer().fit(x, y, g, NAMES)
    assert r.metrics["train_groups"] + r.metrics["valid_groups"] == 49


def test_same_seed_same_model() -> None:
    x, y, g = planted(groups=80, size=10, seed=5)
    a = small_trainer(seed=9).fit(x, y, g, NAMES)
    b = small_trainer(seed=9).fit(x, y, g, NAMES)
    np.testing.assert_array_equal(a.predict(x), b.predict(x))


def test_bad_rows_are_input_errors_bad_models_data_errors(ranker: Ranker, tmp_path: Path) -> None:
    """Training rows come from the caller (InputError); a model that does not fit its feature
    rows or does not load is our stored data (DataError: serving degrades, never a 4xx)."""
    x, y, g = planted(groups=10, size=10, seed=6)
    with pytest.raises(InputError, match="disagree"):
        small_trainer().fit(x, y[:-1], g, NAMES)
    with pytest.raises(InputError, match="positive"):
        small_trainer().fit(x, np.zeros_like(y), g, NAMES)
    with pytest.raises(DataError, match="expects 2 features"):
        ranker.predict(x[:, :1])
    with pytest.raises(DataError, match="not a saved ranker"):
        Ranker.load(tmp_path / "absent")


def test_group_ndcg_known_answer() -> None:
    scores = np.array([0.9, 0.1, 0.5, 0.3, 0.2], dtype=np.float32)
    labels = np.array([0, 1, 1, 0, 0], dtype=np.float32)
    sizes = np.array([3, 2], dtype=np.int64)  # group 2 has no positive: not averaged
    # group 1 ranks [0.9 (0), 0.5 (1), 0.1 (1)]: DCG = 1/log2(3) + 1/log2(4), ideal 1 + 1/log2(3)
    want = (1 / np.log2(3) + 1 / np.log2(4)) / (1 + 1 / np.log2(3))
    assert group_ndcg(scores, labels, sizes, k=3) == pytest.approx(want)
    assert group_ndcg(scores, labels, sizes, k=1) == pytest.approx(0.0)


def test_baseline_comparison_is_recorded() -> None:
    x, y, g = planted(groups=120, size=10, seed=7)
    # A baseline that knows the answer cannot be beaten; one that is noise is.
    oracle = small_trainer().fit(x, y, g, NAMES, baseline=x[:, 0])
    noise = small_trainer().fit(x, y, g, NAMES, baseline=x[:, 1])
    assert oracle.metrics["beats_baseline"] is False
    assert noise.metrics["beats_baseline"] is True
    assert noise.metrics["valid_model_ndcg"] > noise.metrics["valid_baseline_ndcg"]
