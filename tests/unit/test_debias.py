"""Position debiasing: the examination curve estimated from a randomized log matches the truth.

Two known answers: synthetic position-based clicks where the position is confounded with
relevance (better items shown higher, which biases the naive CTR-by-position ratio), and a
generated world, whose true curve ``NewsWorld.examination`` the estimate must come close to.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from feedstack.core.errors import InputError
from feedstack.train.examination import ExaminationCurve, estimate
from feedstack.train.news import estimate_examination
from feedstack.train.newslog import NewsLog
from feedstack.train.slates import groups
from feedstack.world import NewsWorld, WorldConfig, write_world


def test_recovers_a_planted_curve_that_naive_ratios_miss() -> None:
    rng = np.random.default_rng(0)
    k, n_ctx, views = 10, 3000, 100
    truth = 1.0 / (1.0 + np.arange(k)) ** 0.7
    relevance = rng.uniform(0.02, 0.4, n_ctx)
    # A context's position leans to the top the more relevant it is: a confounded logger.
    lean = (relevance - relevance.mean()) / relevance.std()
    logits = -lean[:, None] * np.linspace(-1, 1, k)[None, :]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    u = rng.random((n_ctx, views))
    pos = (u[:, :, None] > np.cumsum(probs, axis=1)[:, None, :]).sum(axis=2)
    ctx = np.repeat(np.arange(n_ctx), views)
    pos = pos.ravel()
    clicked = rng.random(pos.size) < truth[pos] * relevance[ctx]
    curve = estimate(pos, ctx, clicked)
    assert np.abs(curve.probs - truth).max() < 0.03
    assert np.abs(curve.naive - truth).max() > 0.1  # the confounding is real
    assert curve.probs[0] == 1.0 and curve.views == pos.size


def test_close_to_the_generated_worlds_true_curve(tmp_path: Path) -> None:
    config = WorldConfig(users=1500, articles=300, days=1.0, seed=5)
    write_world(config, tmp_path, "parquet")
    log = NewsLog.from_table(pq.read_table(tmp_path / "events.parquet"))
    curve = estimate_examination(log, log.end_s + 1, 3600.0)
    truth = NewsWorld(config).examination(np.arange(curve.probs.size))
    assert curve.probs.size == config.clicks.k
    np.testing.assert_allclose(curve.probs, truth, atol=0.04)
    assert curve.clicks > 1000


def test_weights_invert_the_curve_with_a_cap() -> None:
    curve = ExaminationCurve(np.array([1.0, 0.5, 0.01]), np.ones(3), 1, 3, 1)
    np.testing.assert_allclose(curve.weights(np.array([0, 1, 2, 7])), [1.0, 2.0, 20.0, 20.0])


def test_one_group_per_click_weighted_by_its_position() -> None:
    curve = ExaminationCurve(1.0 / (1.0 + np.arange(4, dtype=np.float64)), np.ones(4), 1, 4, 1)
    request = np.array([7, 7, 7, 7, 9, 9])
    position = np.array([0, 1, 2, -1, 0, 1])  # -1: a candidate never shown
    clicked = np.array([False, True, True, False, False, False])
    g = groups(request, position, clicked, curve)
    assert g.sizes.tolist() == [3, 3]  # two clicks in request 7; request 9 has none
    np.testing.assert_allclose(g.weights, [2.0] * 3 + [3.0] * 3)
    assert g.labels.tolist() == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    plain = groups(request, position, clicked, None)
    assert plain.sizes.tolist() == [4] and plain.labels.sum() == 2 and (plain.weights == 1).all()


def test_estimate_rejects_empty_input() -> None:
    with pytest.raises(InputError):
        estimate(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool))
