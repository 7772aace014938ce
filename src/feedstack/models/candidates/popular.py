"""Most popular: every user gets the catalog ordered by interaction share.

The baseline any model must beat (Gowalla: Recall@20 0.0416), the fallback for a user with no
history, and, as a ranking feature, the item's popularity. The score is the item's share of all
interactions, not a count, so that it does not grow with the size of the data it was fitted on
(the ranker is trained on sources fitted on a slice and applied to sources fitted on all of it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

from feedstack.models.candidates.base import Arrays, CandidateSource, IntArray
from feedstack.models.interactions import InteractionData
from feedstack.models.kernels import FloatMatrix, IndexMatrix


@dataclass(frozen=True, slots=True)
class PopularTrainer:
    name: str = "popular"

    def fit(self, data: InteractionData) -> PopularSource:
        counts = data.item_counts().astype(np.float64)
        share = counts / max(1.0, counts.sum())
        return PopularSource(self.name, data.n_items, data.data_hash(), share.astype(np.float32))


class PopularSource(CandidateSource):
    kind: ClassVar[str] = "popular"

    def __init__(self, name: str, n_items: int, data_hash: str, share: FloatMatrix) -> None:
        super().__init__(name, n_items, data_hash)
        self.share = share
        # Best first, ties to the lower index (top_k's rule).
        self._order = np.lexsort((np.arange(n_items), -share)).astype(np.int32)

    def feature_scores(self, users: IntArray, history: sp.csr_matrix) -> dict[str, FloatMatrix]:
        self.check(users, history)
        # A read-only view: every row is the same, and the blend copies it only to mask it.
        return {self.name: np.broadcast_to(self.share, (len(users), self.n_items))}

    def select(
        self, scores: FloatMatrix, k: int, exclude: sp.csr_matrix | None = None
    ) -> tuple[IndexMatrix, FloatMatrix]:
        """The first ``k`` items of the global order that a user does not have: scanning the
        first k + (most excluded) items of it is enough, instead of the whole catalog."""
        n = scores.shape[0]
        k_eff = min(k, self.n_items)
        longest = 0 if exclude is None else int(np.diff(exclude.indptr).max(initial=0))
        head = self._order[: min(self.n_items, k_eff + longest)]
        cand = np.broadcast_to(head, (n, head.size))
        keep = np.ones(cand.shape, dtype=bool)
        if exclude is not None and exclude.nnz:
            rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(exclude.indptr))
            keys = np.sort(rows * self.n_items + exclude.indices)
            query = np.arange(n, dtype=np.int64)[:, None] * self.n_items + cand
            pos = np.minimum(np.searchsorted(keys, query), keys.size - 1)
            keep = keys[pos] != query
        # The position of each kept item among the kept ones of its row; the first k stay.
        rank = np.cumsum(keep, axis=1) - 1
        take = keep & (rank < k_eff)
        items = np.full((n, k), -1, dtype=np.int32)
        values = np.full((n, k), -np.inf, dtype=np.float32)
        r, c = np.nonzero(take)
        items[r, rank[r, c]] = cand[r, c]
        values[r, rank[r, c]] = self.share[cand[r, c]]
        return items, values

    def params(self) -> dict[str, Any]:
        return {}

    def arrays(self) -> Arrays:
        return {"share": self.share}

    @classmethod
    def from_arrays(
        cls, name: str, n_items: int, data_hash: str, params: Mapping[str, Any], arrays: Arrays
    ) -> Self:
        return cls(name, n_items, data_hash, arrays["share"].astype(np.float32))
