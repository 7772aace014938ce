"""A user's history as the candidate sources see it: their recent clicks, weighted by recency.

Serving has exactly this in the online store: ``user_features.recent_clicks``, the last
RECENT_CLICKS clicked articles, newest first (features/definitions.py). Training builds the same
rows from the log as of any time, so the sources see the same kind of history in both places.
The j-th most recent click (j = 0 the newest) weighs ``decay ** j``: interests drift within
days, so the last few clicks say most about the next one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from feedstack.features.definitions import RECENT_CLICKS

IntArray = npt.NDArray[np.int64]
F64Array = npt.NDArray[np.float64]
HISTORY_DECAY = 0.85


@dataclass(frozen=True)
class ClickHistory:
    """Every click, sorted by (user, time), answering "the last clicks of u before t"."""

    user: IntArray
    item: IntArray
    time_s: F64Array
    n_items: int
    length: int = RECENT_CLICKS
    decay: float = HISTORY_DECAY

    @classmethod
    def build(cls, users: IntArray, items: IntArray, times: F64Array, n_items: int) -> ClickHistory:
        order = np.lexsort((np.asarray(times), np.asarray(users)))
        return cls(
            np.asarray(users, np.int64)[order],
            np.asarray(items, np.int64)[order],
            np.asarray(times, np.float64)[order],
            n_items,
        )

    def _bounds(self, users: IntArray, at_s: F64Array) -> tuple[IntArray, IntArray]:
        """[start, end) of each query's clicks: the user's last ``length`` before ``at_s``."""
        users = np.asarray(users, np.int64)
        at = np.broadcast_to(np.asarray(at_s, np.float64), users.shape)
        first = np.searchsorted(self.user, users, side="left")
        last = np.searchsorted(self.user, users, side="right")
        end = first.copy()
        for q in np.flatnonzero(last > first):  # per user, a binary search in their own clicks
            end[q] = first[q] + np.searchsorted(self.time_s[first[q] : last[q]], at[q], "left")
        return np.maximum(first, end - self.length), end

    def counts(self, users: IntArray, at_s: F64Array) -> IntArray:
        """How many clicks (at most ``length``) each user had before ``at_s``."""
        start, end = self._bounds(users, at_s)
        return end - start

    def rows(self, users: IntArray, at_s: F64Array) -> sp.csr_matrix:
        """CSR [len(users), n_items]: recency weights of each user's recent clicks before
        ``at_s`` (a scalar or one time per user); a repeated click sums its weights."""
        start, end = self._bounds(users, at_s)
        n = end - start
        idx = np.repeat(end, n) - 1 - (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
        rank = np.repeat(end, n) - 1 - idx  # 0 = newest
        row = np.repeat(np.arange(users.size), n)
        weights = (self.decay**rank).astype(np.float32)
        out = sp.csr_matrix((weights, (row, self.item[idx])), shape=(users.size, self.n_items))
        out.sum_duplicates()
        out.sort_indices()
        return out
