"""The order of an interactions model's candidates: one pure function that serving
(serve/pipeline.py) and ``feedstack evaluate`` (train/twostage.py) both call, so the accuracy
``evaluate`` reports is the accuracy of the order a served feed has (transport aside).

Rows come grouped by user (``indptr``), each group in first-stage (blend) order. The ranker scores
each group's first ``depth`` rows; those are ordered by its score, the rest follow in first-stage
order. Ties keep the first-stage order. A ranker that did not beat the first-stage order on its
held-out users (``use_ranker`` False: too little data to learn from) is not called at all.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatMatrix = npt.NDArray[np.float32]


class Scorer(Protocol):
    """A Ranker, compiled or not: ``predict(features, num_threads) -> scores``."""

    def predict(self, features: FloatMatrix, num_threads: int = 1) -> Any: ...


def order_rows(
    scorer: Scorer | None,
    features: FloatMatrix,
    indptr: IntArray,
    depth: int,
    use_ranker: bool = True,
    num_threads: int = 1,
) -> IntArray:
    """Every row index, group by group, each group best first (see the module docstring)."""
    n = int(features.shape[0])
    sizes = np.diff(indptr)
    group = np.repeat(np.arange(sizes.size, dtype=np.int64), sizes)
    position = np.arange(n, dtype=np.int64) - np.repeat(indptr[:-1], sizes)
    scores = np.full(n, -np.inf, dtype=np.float32)
    head = position < depth
    if scorer is not None and use_ranker and head.any():
        x = np.ascontiguousarray(features[head], dtype=np.float32)
        scores[head] = np.asarray(scorer.predict(x, num_threads=num_threads), dtype=np.float32)
    return np.lexsort((np.arange(n), -scores, group)).astype(np.int64)


def top_rows(order: IntArray, indptr: IntArray, k: int) -> npt.NDArray[np.int64]:
    """The first ``k`` rows of each group of ``order`` (``order_rows``'s output):
    [n_groups, k] row indices, -1 padded."""
    sizes = np.diff(indptr)
    group = np.repeat(np.arange(sizes.size, dtype=np.int64), sizes)
    position = np.arange(order.size, dtype=np.int64) - np.repeat(indptr[:-1], sizes)
    keep = position < k
    out = np.full((sizes.size, k), -1, dtype=np.int64)
    out[group[keep], position[keep]] = order[keep]
    return out
