"""Implicit-feedback matrix factorization (ALS, Hu, Koren & Volinsky, ICDM 2008), via ``implicit``.

The artifact keeps only the item factors. A user's factors are solved from their history at
scoring time (the ALS user step with the item factors fixed: "fold-in"), so every user, seen at
fit time or not, is scored the same way from the history given, and the artifact does not grow
with the number of users.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from feedstack.models.candidates.base import Arrays, CandidateSource, IntArray
from feedstack.models.interactions import InteractionData
from feedstack.models.kernels import FloatMatrix, row_stable_matmul


@dataclass(frozen=True, slots=True)
class ALSTrainer:
    """Hyper-parameters; ``alpha`` is the confidence of an observed pair (C = alpha × r).

    Chosen on the Gowalla tuning split (ALS alone, Recall@20): 128 factors, alpha 20, 15
    iterations 0.1709; alpha 40 0.1749; 256 factors, alpha 40, 8 iterations 0.1893 (10 s).
    """

    name: str = "als"
    factors: int = 256
    regularization: float = 0.05
    alpha: float = 40.0
    iterations: int = 8
    seed: int = 0

    def fit(self, data: InteractionData) -> ALSSource:
        from implicit.cpu.als import AlternatingLeastSquares

        # implicit runs its own threads; a BLAS pool inside them oversubscribes the cores
        # (implicit warns when it sees one; shared design/dependencies.md: 3.1 s vs 4.9 s).
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=self.seed,
            )
            model.fit(data.matrix, show_progress=False)
        params = asdict(self)
        del params["name"]
        return ALSSource(
            self.name,
            data.n_items,
            data.data_hash(),
            np.ascontiguousarray(model.item_factors, dtype=np.float32),
            params,
        )


class ALSSource(CandidateSource):
    kind: ClassVar[str] = "als"

    def __init__(
        self,
        name: str,
        n_items: int,
        data_hash: str,
        item_factors: FloatMatrix,
        params: Mapping[str, Any],
    ) -> None:
        super().__init__(name, n_items, data_hash)
        self.item_factors = item_factors
        self._scores_right = np.ascontiguousarray(item_factors.T)  # [factors, n_items]
        self._params = dict(params)
        self._solver: Any = None

    def add_items(self, n: int) -> None:
        """``n`` items new since the fit (articles published later): zero factors, score 0,
        as ALS gives an item nobody interacted with."""
        if n <= 0:
            return
        pad = np.zeros((n, self.item_factors.shape[1]), dtype=np.float32)
        self.item_factors = np.ascontiguousarray(np.vstack([self.item_factors, pad]))
        self._scores_right = np.ascontiguousarray(self.item_factors.T)
        self.n_items += n
        self._solver = None

    def user_factors(self, history: sp.csr_matrix) -> FloatMatrix:
        """The ALS user step for each row of ``history``, item factors fixed."""
        with threadpool_limits(1, "blas"):
            if self._solver is None:
                from implicit.cpu.als import AlternatingLeastSquares

                solver = AlternatingLeastSquares(
                    factors=self.item_factors.shape[1],
                    regularization=self._params["regularization"],
                    alpha=self._params["alpha"],
                )
                solver.item_factors = self.item_factors
                self._solver = solver
            factors = self._solver.recalculate_user(np.arange(history.shape[0]), history)
        return np.asarray(factors, dtype=np.float32)

    def feature_scores(self, users: IntArray, history: sp.csr_matrix) -> dict[str, FloatMatrix]:
        history = self.check(users, history)
        return {self.name: row_stable_matmul(self.user_factors(history), self._scores_right)}

    def params(self) -> dict[str, Any]:
        return dict(self._params)

    def arrays(self) -> Arrays:
        return {"item_factors": self.item_factors}

    @classmethod
    def from_arrays(
        cls, name: str, n_items: int, data_hash: str, params: Mapping[str, Any], arrays: Arrays
    ) -> Self:
        return cls(name, n_items, data_hash, arrays["item_factors"].astype(np.float32), params)
