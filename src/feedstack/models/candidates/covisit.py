"""Co-visitation: items clicked by the same user within a session window, time-decayed.

Every pair of clicks (a then b) by one user at most ``window_s`` apart, and at most ``max_lag``
clicks apart, adds ``exp(-(now - t_b) / tau_s)`` to both C[a, b] and C[b, a] (t_b: the later
click's time, when the pair became known). The counts are *exponentially decayed* like every
windowed count in feedstack (features/definitions.py): the state is a pair (value, as-of time)
that is brought forward by one multiplication, so old stories fade instead of dropping out, and
adding pairs in any batching gives the same counts up to rounding.

A user is scored from their history h (the CSR the caller passes; feedstack passes recent clicks
weighted by recency, train/history.py):

    covisit(u, i)       = Σ_j h_uj · C[j, i] / sqrt(n_j · n_i)     (cosine-normalized)
    covisit_count(u, i) = Σ_j h_uj · C[j, i]                        (raw decayed count)

with n the decayed click count of each item (same tau). The normalization is item-based CF's
cosine (Sarwar et al., "Item-Based Collaborative Filtering Recommendation Algorithms", WWW 2001;
Deshpande & Karypis, TOIS 2004): without it a viral story co-occurs with everything.

Streaming: ``add_pairs`` (pairs and their times) and ``add_items`` (the catalog grows) update a
fitted source; ``pairs`` turns a click stream into pairs. Items unseen at fit time score 0 until
someone clicks them together with something else: fresh articles are the content source's job.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from feedstack.core.errors import InputError
from feedstack.models.candidates.base import (
    Arrays,
    CandidateSource,
    IntArray,
    csr_arrays,
    csr_from,
)
from feedstack.models.interactions import InteractionData
from feedstack.models.kernels import FloatMatrix

F64Array = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class CovisitTrainer:
    """``window_s``: a session window (two clicks further apart are not a pair); ``max_lag``:
    a click pairs with at most this many earlier clicks of the user; ``tau_s``: decay."""

    name: str = "covisit"
    window_s: float = 24 * 3600.0
    max_lag: int = 10
    tau_s: float = 24 * 3600.0

    def fit(self, data: InteractionData, as_of_s: float | None = None) -> CovisitSource:
        """Pairs from ``data`` (its ``times`` are required: the latest click of each pair),
        counts as of ``as_of_s`` (default: the last click)."""
        if data.times is None:
            raise InputError(f"{self.name}: co-visitation needs click times (data.times)")
        times = data.times
        rows = np.repeat(np.arange(times.shape[0], dtype=np.int64), np.diff(times.indptr))
        left, right, at = pairs(
            rows, times.indices.astype(np.int64), times.data, self.window_s, self.max_lag
        )
        clicked = times.data
        now = float(as_of_s if as_of_s is not None else (clicked.max() if clicked.size else 0.0))
        source = self.empty(data.n_items, now, data.data_hash())
        source.add_clicks(times.indices.astype(np.int64), clicked, now)
        source.add_pairs(left, right, at, now)
        return source

    def empty(self, n_items: int, as_of_s: float, data_hash: str = "") -> CovisitSource:
        params = asdict(self)
        del params["name"]
        counts = sp.csr_matrix((n_items, n_items), dtype=np.float64)
        return CovisitSource(
            self.name, n_items, data_hash, counts, np.zeros(n_items), as_of_s, params
        )


def pairs(
    users: IntArray,
    items: IntArray,
    times: F64Array,
    window_s: float,
    max_lag: int,
) -> tuple[IntArray, IntArray, F64Array]:
    """Co-visit pairs of a click stream: ``(earlier item, later item, later click's time)``.

    Clicks are grouped by user and ordered by time; click k pairs with the user's clicks k-1 ..
    k-max_lag that are at most ``window_s`` earlier and on another item. Vectorized: one shifted
    comparison per lag, O(clicks × max_lag).
    """
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    times = np.asarray(times, np.float64)
    order = np.lexsort((items, times, users))
    u, i, t = users[order], items[order], times[order]
    lefts, rights, ats = [], [], []
    for lag in range(1, max_lag + 1):
        if lag >= u.size:
            break
        keep = (u[lag:] == u[:-lag]) & (t[lag:] - t[:-lag] <= window_s) & (i[lag:] != i[:-lag])
        lefts.append(i[:-lag][keep])
        rights.append(i[lag:][keep])
        ats.append(t[lag:][keep])
    if not lefts:
        empty = np.zeros(0, np.int64)
        return empty, empty.copy(), np.zeros(0)
    left, right, at = np.concatenate(lefts), np.concatenate(rights), np.concatenate(ats)
    by_time = np.argsort(at, kind="stable")
    return left[by_time], right[by_time], at[by_time]


def _dense(m: sp.csr_matrix) -> FloatMatrix:
    out: FloatMatrix = np.asarray(m.toarray(), dtype=np.float32)
    return out


class CovisitSource(CandidateSource):
    kind: ClassVar[str] = "covisit"

    def __init__(
        self,
        name: str,
        n_items: int,
        data_hash: str,
        counts: sp.csr_matrix,
        clicks: F64Array,
        as_of_s: float,
        params: Mapping[str, Any],
    ) -> None:
        super().__init__(name, n_items, data_hash)
        self.counts = sp.csr_matrix(counts, dtype=np.float64)  # C, symmetric, as of as_of_s
        self.clicks = np.asarray(clicks, dtype=np.float64)  # n, decayed clicks per item
        self.as_of_s = float(as_of_s)
        self._params = dict(params)
        self.tau_s = float(params["tau_s"])
        self._normalized: sp.csr_matrix | None = None
        self._raw: sp.csr_matrix | None = None

    @property
    def feature_names(self) -> tuple[str, ...]:
        return (self.name, f"{self.name}_count")

    # ------------------------------------------------------------------------- updates
    def advance(self, to_s: float) -> None:
        """Decay every count from its as-of time to ``to_s`` (never backwards)."""
        if to_s <= self.as_of_s:
            return
        factor = math.exp(-(to_s - self.as_of_s) / self.tau_s)
        self.counts = self.counts * factor
        self.clicks *= factor
        self.as_of_s = float(to_s)
        self._invalidate()

    def add_items(self, n_new: int) -> None:
        """Grow the catalog by ``n_new`` items (no counts yet)."""
        if n_new <= 0:
            return
        self.n_items += n_new
        self.counts.resize((self.n_items, self.n_items))
        self.clicks = np.concatenate([self.clicks, np.zeros(n_new)])
        self._invalidate()

    def add_clicks(self, items: IntArray, times: F64Array, now_s: float) -> None:
        """Count clicks (the normalizer n) up to ``now_s``; events after it are an error."""
        self._check_times(times, now_s)
        self.advance(now_s)
        w = np.exp(-(self.as_of_s - np.asarray(times, np.float64)) / self.tau_s)
        np.add.at(self.clicks, np.asarray(items, np.int64), w)
        self._invalidate()

    def add_pairs(self, left: IntArray, right: IntArray, times: F64Array, now_s: float) -> None:
        """Count co-visit pairs (both directions) that happened up to ``now_s``."""
        self._check_times(times, now_s)
        self.advance(now_s)
        if len(left) == 0:
            return
        w = np.exp(-(self.as_of_s - np.asarray(times, np.float64)) / self.tau_s)
        a, b = np.asarray(left, np.int64), np.asarray(right, np.int64)
        shape = (self.n_items, self.n_items)
        new = sp.csr_matrix((np.concatenate([w, w]), (np.r_[a, b], np.r_[b, a])), shape=shape)
        self.counts = sp.csr_matrix(self.counts + new)
        self._invalidate()

    def _check_times(self, times: F64Array, now_s: float) -> None:
        t = np.asarray(times, np.float64)
        if t.size and float(t.max()) > now_s:
            raise InputError(f"{self.name}: an event at {t.max()} is after now ({now_s})")

    def _invalidate(self) -> None:
        self._normalized = None
        self._raw = None

    # ------------------------------------------------------------------------- scoring
    def _matrices(self) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        if self._normalized is None or self._raw is None:
            raw = sp.csr_matrix(self.counts, dtype=np.float32)
            raw.sort_indices()
            inv = np.where(self.clicks > 0, 1.0 / np.sqrt(np.maximum(self.clicks, 1e-300)), 0.0)
            norm = sp.csr_matrix(sp.diags(inv) @ self.counts @ sp.diags(inv), dtype=np.float32)
            norm.sort_indices()
            self._raw, self._normalized = raw, norm
        return self._normalized, self._raw

    def feature_scores(self, users: IntArray, history: sp.csr_matrix) -> dict[str, FloatMatrix]:
        history = self.check(users, history)
        normalized, raw = self._matrices()
        # A history is a few recent clicks: the sparse product is small, and each row is
        # computed on its own (a user's scores never depend on the batch around them).
        return {
            self.name: _dense(history @ normalized),
            f"{self.name}_count": _dense(history @ raw),
        }

    # ------------------------------------------------------------------------- artifact
    def params(self) -> dict[str, Any]:
        return dict(self._params)

    def arrays(self) -> Arrays:
        return {
            **csr_arrays("counts", self.counts),
            "clicks": self.clicks,
            "as_of_s": np.asarray([self.as_of_s]),
        }

    @classmethod
    def from_arrays(
        cls, name: str, n_items: int, data_hash: str, params: Mapping[str, Any], arrays: Arrays
    ) -> Self:
        counts = csr_from("counts", arrays)
        return cls(
            name, n_items, data_hash, counts, arrays["clicks"], float(arrays["as_of_s"][0]), params
        )
