"""models/rank/order.py: the one ordering of an interactions model's candidates."""

from __future__ import annotations

import numpy as np

from feedstack.models.rank.order import order_rows, top_rows


class ByFirstColumn:
    """A scorer whose score is the first feature: the answer is known."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, features: np.ndarray, num_threads: int = 1) -> np.ndarray:
        self.calls.append(features.shape[0])
        return features[:, 0].astype(np.float32)


def test_head_by_score_tail_in_first_stage_order_ties_keep_order() -> None:
    # Two groups in first-stage order: [0..4] and [5..7]; depth 3.
    x = np.array([[1], [5], [5], [9], [8], [0], [2], [1]], dtype=np.float32)
    indptr = np.array([0, 5, 8], dtype=np.int64)
    scorer = ByFirstColumn()
    order = order_rows(scorer, x, indptr, depth=3)
    # group 0: head rows 0,1,2 scored 1,5,5 -> 1,2 (tie: row order), 0; tail 3,4 as they were
    # group 1: head rows 5,6,7 scored 0,2,1 -> 6,7,5
    assert order.tolist() == [1, 2, 0, 3, 4, 6, 7, 5]
    assert scorer.calls == [6]  # only the heads are scored, in one call
    assert top_rows(order, indptr, 4).tolist() == [[1, 2, 0, 3], [6, 7, 5, -1]]


def test_unused_ranker_keeps_the_first_stage_order() -> None:
    x = np.array([[3], [9], [1]], dtype=np.float32)
    indptr = np.array([0, 3], dtype=np.int64)
    scorer = ByFirstColumn()
    assert order_rows(scorer, x, indptr, depth=3, use_ranker=False).tolist() == [0, 1, 2]
    assert scorer.calls == []


def test_batch_equals_one_group_at_a_time() -> None:
    rng = np.random.default_rng(1)
    x = rng.random((40, 2)).astype(np.float32)
    indptr = np.array([0, 7, 7, 25, 40], dtype=np.int64)
    batch = order_rows(ByFirstColumn(), x, indptr, depth=5)
    for g in range(4):
        lo, hi = int(indptr[g]), int(indptr[g + 1])
        one = order_rows(ByFirstColumn(), x[lo:hi], np.array([0, hi - lo]), depth=5)
        assert (batch[lo:hi] - lo).tolist() == one.tolist()
