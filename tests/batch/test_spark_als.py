"""ALS through pyspark.ml against implicit's: the same artifact, scored by the same code; the
factors come from different solvers, so the comparison is the tolerance batch/als.py states."""

from __future__ import annotations

import numpy as np
import pytest

from feedstack.batch.als import fit_als
from feedstack.batch.engine import Engine
from feedstack.models.candidates.als import ALSSource, ALSTrainer
from feedstack.models.interactions import InteractionData

pytestmark = pytest.mark.slow

BLOCKS, USERS_PER_BLOCK, ITEMS_PER_BLOCK = 4, 15, 10


def planted() -> tuple[InteractionData, np.ndarray]:
    """Users of block b interact with ~70 % of block b's items; the rest are held out."""
    rng = np.random.default_rng(5)
    users, items, block_of = [], [], []
    for b in range(BLOCKS):
        for j in range(USERS_PER_BLOCK):
            u = b * USERS_PER_BLOCK + j
            block_of.append(b)
            own = b * ITEMS_PER_BLOCK + np.flatnonzero(rng.random(ITEMS_PER_BLOCK) < 0.7)
            users += [u] * own.size
            items += own.tolist()
    n_users, n_items = BLOCKS * USERS_PER_BLOCK, BLOCKS * ITEMS_PER_BLOCK
    data = InteractionData.from_pairs(np.array(users), np.array(items), n_users, n_items)
    return data, np.array(block_of)


def test_spark_als_meets_the_stated_tolerance(spark_engine: Engine) -> None:
    data, block_of = planted()
    trainer = ALSTrainer(factors=BLOCKS, regularization=0.05, alpha=10.0, iterations=10, seed=3)
    local = trainer.fit(data)
    spark = fit_als(spark_engine, data, trainer)
    assert isinstance(spark, ALSSource) and spark.item_factors.shape == local.item_factors.shape
    users = np.arange(data.n_users, dtype=np.int64)
    history = data.matrix
    scores = {"implicit": local.scores(users, history), "spark": spark.scores(users, history)}
    for name, source in (("implicit", local), ("spark", spark)):
        items, _ = source.recommend(users, history, k=ITEMS_PER_BLOCK, exclude=history)
        recall = []
        for u in users.tolist():
            b = block_of[u]
            held = set(range(b * ITEMS_PER_BLOCK, (b + 1) * ITEMS_PER_BLOCK))
            held -= set(history[u].indices.tolist())
            if held:  # the known answer: the held-out items of the user's block come first
                recall.append(len(held & set(items[u, : len(held)].tolist())) / len(held))
        assert np.mean(recall) >= 0.95, (name, np.mean(recall))
    a, b = scores["implicit"], scores["spark"]
    pearson = np.mean([np.corrcoef(a[u], b[u])[0, 1] for u in users.tolist()])
    assert pearson >= 0.99, pearson
    assert float(np.abs(a - b).max()) <= 0.05
