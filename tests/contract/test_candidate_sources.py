"""The candidate-source contract (models/candidates/base.py), run against every source: the
interactions ones (ALS, the item-item graph filter, popular) and the news ones (co-visitation,
content, trending). A new source is one module plus one entry in ``CASES``.

Known-answer tests of each source live beside it (tests/unit/test_candidates.py,
tests/unit/test_news_sources.py); this suite checks what every source owes its callers: shapes
and dtypes, best-first order, exclusion and padding, batch equals single, ``score`` agrees with
``recommend``, exact save/load through the registry (``load_source``), and bad input refused.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from feedstack.core.errors import InputError
from feedstack.models.candidates import KINDS, load_source
from feedstack.models.candidates.als import ALSTrainer
from feedstack.models.candidates.base import CandidateSource
from feedstack.models.candidates.content import ContentTrainer
from feedstack.models.candidates.covisit import CovisitTrainer
from feedstack.models.candidates.itemitem import ItemItemTrainer
from feedstack.models.candidates.popular import PopularTrainer
from tests.unit.test_candidates import checkerboard
from tests.unit.test_news_sources import TEXTS, covisit_data, trending

H = 3600.0

CASES: dict[str, Callable[[], CandidateSource]] = {
    "als": lambda: ALSTrainer(factors=8, regularization=0.01, alpha=1.0, iterations=15).fit(
        checkerboard(20)
    ),
    "gfcf": lambda: ItemItemTrainer(ideal_rank=6).fit(checkerboard(20)),
    "popular": lambda: PopularTrainer().fit(checkerboard(20)),
    "covisit": lambda: CovisitTrainer(window_s=6 * H).fit(covisit_data()),
    "content": lambda: ContentTrainer(dims=6, min_df=1, max_df=0.9).fit(TEXTS),
    "trending": trending,
}


def test_every_registered_kind_is_covered() -> None:
    assert set(CASES) == set(KINDS)


@pytest.fixture(scope="module", params=sorted(CASES))
def source(request: pytest.FixtureRequest) -> CandidateSource:
    return CASES[request.param]()


def histories(n_items: int) -> tuple[np.ndarray, sp.csr_matrix]:
    """Three users: two items, one item, nothing (a cold user)."""
    rows, cols = [0, 0, 1], [0, 1, 2 % n_items]
    data = np.ones(len(rows), dtype=np.float32)
    history = sp.csr_matrix((data, (rows, cols)), shape=(3, n_items), dtype=np.float32)
    return np.arange(3, dtype=np.int64), history


def test_recommend_shapes_order_and_exclusion(source: CandidateSource) -> None:
    users, history = histories(source.n_items)
    k = min(3, source.n_items)
    items, scores = source.recommend(users, history, k=k, exclude=history)
    assert items.shape == scores.shape == (3, k)
    assert items.dtype == np.int32 and scores.dtype == np.float32
    finite = np.where(np.isfinite(scores), scores, np.float32(-1e30))
    assert np.all(np.diff(finite, axis=1) <= 0)  # best first
    for u in range(3):
        assert not set(items[u].tolist()) & set(history[u].indices.tolist())


def test_padding_past_the_catalog(source: CandidateSource) -> None:
    users, history = histories(source.n_items)
    k = source.n_items + 3
    items, scores = source.recommend(users, history, k=k, exclude=history)
    for row in range(3):
        left = source.n_items - history[row].nnz
        assert (items[row, left:] == -1).all() and np.isneginf(scores[row, left:]).all()
        assert len(set(items[row, :left].tolist())) == left


def test_batch_equals_single(source: CandidateSource) -> None:
    users, history = histories(source.n_items)
    batch = source.feature_scores(users, history)
    assert tuple(batch) == source.feature_names and source.feature_names[0] == source.name
    for row in range(3):
        single = source.feature_scores(users[row : row + 1], history[row])
        for name in source.feature_names:
            assert single[name].dtype == np.float32
            assert single[name].shape == (1, source.n_items)
            np.testing.assert_array_equal(single[name][0], batch[name][row], err_msg=name)


def test_score_agrees_with_recommend(source: CandidateSource) -> None:
    users, history = histories(source.n_items)
    k = min(3, source.n_items)
    items, scores = source.recommend(users, history, k=k, exclude=history)
    np.testing.assert_array_equal(source.score(users, history, items), scores)


def test_save_load_round_trip_is_exact(source: CandidateSource, tmp_path: Path) -> None:
    source.save(tmp_path / source.name)
    loaded = load_source(tmp_path / source.name)
    assert type(loaded) is type(source)
    assert (loaded.name, loaded.n_items, loaded.params()) == (
        source.name,
        source.n_items,
        source.params(),
    )
    users, history = histories(source.n_items)
    a, b = source.feature_scores(users, history), loaded.feature_scores(users, history)
    for name in source.feature_names:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_bad_history_shape_is_input_error(source: CandidateSource) -> None:
    wrong = sp.csr_matrix((1, source.n_items + 1), dtype=np.float32)
    with pytest.raises(InputError):
        source.recommend(np.array([0, 1]), wrong, k=2)
