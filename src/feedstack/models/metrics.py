"""Top-K metrics of ranked lists against held-out interactions, vectorized over users.

The protocol of the LightGCN/NGCF benchmarks (He et al., SIGIR 2020; their evaluation code):

- Recall@K = hits in the top K / number of the user's held-out items;
- NDCG@K with binary gains, DCG = Σ_j hit_j / log2(j + 2) over positions j = 0..K-1, and the ideal
  DCG over min(|held-out|, K) hits;
- MRR@K = 1 / (1 + position of the first hit), 0 without a hit;
- every average is over users with at least one held-out item.

Beyond accuracy: coverage (share of the catalog recommended to anyone) and novelty (mean
self-information -log2 p(i) of recommended items, p(i) = share of users who have item i in
training; Zhou et al., PNAS 2010).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from feedstack.core.errors import InputError

IndexMatrix = npt.NDArray[np.int32] | npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def hits(top: IndexMatrix, truth: sp.csr_matrix) -> npt.NDArray[np.bool_]:
    """hits[u, j]: item ``top[u, j]`` is in row u of ``truth`` (rows aligned; -1 never hits)."""
    truth = sp.csr_matrix(truth)
    if top.shape[0] != truth.shape[0]:
        raise InputError(f"{top.shape[0]} ranked lists for {truth.shape[0]} users")
    n_items = np.int64(truth.shape[1])
    rows = np.repeat(np.arange(truth.shape[0], dtype=np.int64), np.diff(truth.indptr))
    keys = np.sort(rows * n_items + truth.indices.astype(np.int64))
    query = np.arange(top.shape[0], dtype=np.int64)[:, None] * n_items + top.astype(np.int64)
    pos = np.minimum(np.searchsorted(keys, query), max(keys.size - 1, 0))
    found = keys[pos] == query if keys.size else np.zeros(top.shape, dtype=bool)
    return np.asarray(found & (top >= 0), dtype=bool)


def _discounts(k: int) -> FloatArray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def per_user(top: IndexMatrix, truth: sp.csr_matrix, k: int) -> dict[str, FloatArray]:
    """Recall@k, NDCG@k and MRR@k of every user with a held-out item, and which users those are."""
    if top.shape[1] < k:
        raise InputError(f"ranked lists hold {top.shape[1]} items, fewer than k = {k}")
    h = hits(top[:, :k], truth)
    n_true = np.diff(sp.csr_matrix(truth).indptr)
    users = np.flatnonzero(n_true > 0)
    h, n_true = h[users], n_true[users]
    disc = _discounts(k)
    dcg = h @ disc
    idcg = np.cumsum(disc)[np.minimum(n_true, k) - 1]
    first = np.where(h.any(axis=1), h.argmax(axis=1), -1)
    return {
        "users": users.astype(np.float64),
        "recall": h.sum(axis=1) / n_true,
        "ndcg": dcg / idcg,
        "mrr": np.where(first >= 0, 1.0 / (np.maximum(first, 0) + 1.0), 0.0),
    }


def coverage(top: IndexMatrix, n_items: int) -> float:
    """Share of the catalog that appears in at least one list."""
    shown = np.unique(top[top >= 0])
    return float(shown.size / n_items) if n_items else 0.0


def novelty(top: IndexMatrix, item_users: npt.NDArray[np.int64], n_users: int) -> float:
    """Mean self-information (bits) of the recommended items; unseen items count as 1 user."""
    items = top[top >= 0]
    if items.size == 0 or n_users == 0:
        return 0.0
    p = np.maximum(item_users[items], 1) / n_users
    return float(np.mean(-np.log2(p)))


def ranking_metrics(
    top: IndexMatrix,
    truth: sp.csr_matrix,
    k: int,
    item_users: npt.NDArray[np.int64] | None = None,
    n_users: int | None = None,
) -> dict[str, float]:
    """``recall@k``, ``ndcg@k``, ``mrr@k``, ``coverage@k``, ``users`` (evaluated), and with
    ``item_users`` (training users per item) and ``n_users`` also ``novelty@k``."""
    scores = per_user(top, truth, k)
    out = {
        f"recall@{k}": float(scores["recall"].mean()) if scores["users"].size else 0.0,
        f"ndcg@{k}": float(scores["ndcg"].mean()) if scores["users"].size else 0.0,
        f"mrr@{k}": float(scores["mrr"].mean()) if scores["users"].size else 0.0,
        f"coverage@{k}": coverage(top[:, :k], int(truth.shape[1])),
        "users": int(scores["users"].size),
    }
    if item_users is not None and n_users is not None:
        out[f"novelty@{k}"] = novelty(top[:, :k], item_users, n_users)
    return out


def recall_of_sets(found: npt.NDArray[np.float32], n_true: npt.NDArray[np.int64]) -> float:
    """Mean of found / n_true over users with n_true > 0 (candidate recall: found = hits among a
    user's candidates, any order)."""
    users = n_true > 0
    return float(np.mean(found[users] / n_true[users])) if users.any() else 0.0
