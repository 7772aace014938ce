"""Ranking metrics: hand-computed known answers, and the vectorized code against a plain loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from feedstack.core.errors import InputError
from feedstack.models.metrics import coverage, hits, novelty, per_user, ranking_metrics


def truth_of(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    data = [(u, i) for u, items in enumerate(rows) for i in items]
    u = np.array([p[0] for p in data], dtype=np.int64)
    i = np.array([p[1] for p in data], dtype=np.int64)
    return sp.csr_matrix((np.ones(u.size, np.float32), (u, i)), shape=(len(rows), n_items))


def test_known_answers() -> None:
    top = np.array([[3, 1, 7], [0, 2, 4], [5, 6, 8]])
    truth = truth_of([[1, 9], [4], []], n_items=10)  # user 2 has no test item: not averaged
    m = ranking_metrics(top, truth, k=3)
    # user 0: hit at position 1 of 2 test items; user 1: hit at position 2 of 1
    assert m["recall@3"] == pytest.approx((1 / 2 + 1 / 1) / 2)
    idcg0 = 1 + 1 / math.log2(3)  # min(|test| = 2, K = 3) ideal hits
    ndcg0 = (1 / math.log2(3)) / idcg0
    ndcg1 = (1 / math.log2(4)) / 1.0
    assert m["ndcg@3"] == pytest.approx((ndcg0 + ndcg1) / 2)
    assert m["mrr@3"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert m["users"] == 2


def test_ideal_dcg_is_over_min_of_test_and_k() -> None:
    # 5 test items, K = 2, both slots hit: a perfect list has NDCG 1 (ideal over min(5, 2) = 2).
    truth = truth_of([[0, 1, 2, 3, 4]], n_items=6)
    m = ranking_metrics(np.array([[0, 1]]), truth, k=2)
    assert m["ndcg@2"] == pytest.approx(1.0)
    assert m["recall@2"] == pytest.approx(2 / 5)


def test_padding_never_hits_and_short_lists_fail() -> None:
    truth = truth_of([[0]], n_items=3)
    assert not hits(np.array([[-1, -1]]), truth).any()
    with pytest.raises(InputError):
        per_user(np.array([[0]]), truth, k=2)
    with pytest.raises(InputError):
        hits(np.array([[0], [1]]), truth)


def test_vectorized_equals_loop() -> None:
    rng = np.random.default_rng(7)
    n_users, n_items, k = 40, 30, 10
    dense = rng.random((n_users, n_items)) < 0.15
    truth = sp.csr_matrix(dense.astype(np.float32))
    top = np.stack([rng.permutation(n_items)[:k] for _ in range(n_users)])
    got = per_user(top, truth, k)
    recalls, ndcgs = [], []
    for u in range(n_users):
        rel = set(np.flatnonzero(dense[u]).tolist())
        if not rel:
            continue
        h = [1.0 if int(i) in rel else 0.0 for i in top[u]]
        dcg = sum(x / math.log2(j + 2) for j, x in enumerate(h))
        idcg = sum(1 / math.log2(j + 2) for j in range(min(len(rel), k)))
        recalls.append(sum(h) / len(rel))
        ndcgs.append(dcg / idcg)
    np.testing.assert_allclose(got["recall"], recalls)
    np.testing.assert_allclose(got["ndcg"], ndcgs)


def test_coverage_and_novelty() -> None:
    top = np.array([[0, 1], [1, -1]])
    assert coverage(top, n_items=4) == pytest.approx(0.5)
    item_users = np.array([8, 2, 0, 0])  # of 8 users
    # items 0, 1, 1: -log2(8/8), -log2(2/8) twice
    assert novelty(top, item_users, n_users=8) == pytest.approx((0 + 2 + 2) / 3)
    m = ranking_metrics(top, truth_of([[1], [1]], 4), k=2, item_users=item_users, n_users=8)
    assert m["novelty@2"] == pytest.approx(4 / 3)
    assert m["coverage@2"] == pytest.approx(0.5)
