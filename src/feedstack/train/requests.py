"""Logged requests served again: candidates and ranking features for a batch of impressions.

A request is a logged impression; the clicked ones are what training and evaluation use (an
impression without a click gives LambdaRank nothing to order). ``serve`` builds, at the replay's
current time, exactly what a server would: the user's recent-click history, the live articles
minus what the user just read, the blend's candidates, and the features of every candidate.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from feedstack.models.candidates.blend import Blend, Candidates
from feedstack.train.newslog import NewsLog
from feedstack.train.replay import Replay

IntArray = npt.NDArray[np.int64]
FloatMatrix = npt.NDArray[np.float32]


class Requests:
    """Which logged impressions were clicked, and where."""

    def __init__(self, log: NewsLog) -> None:
        imp, c = log.impressions, log.clicks
        self.log = log
        linked = (c.request >= 0) & (c.position >= 0)
        self.clicked = np.zeros(imp.items.shape, dtype=bool)  # [impression, position]
        self.clicked[c.request[linked], c.position[linked]] = True
        self.has_click = self.clicked.any(axis=1)

    def between(self, lo_s: float, hi_s: float) -> IntArray:
        """Clicked impressions with a time in [lo_s, hi_s), in log order."""
        t = self.log.impressions.time_s
        return np.flatnonzero((t >= lo_s) & (t < hi_s) & self.has_click).astype(np.int64)

    def clicks_of(self, sel: IntArray) -> sp.csr_matrix:
        """CSR [len(sel), n_items]: the articles clicked in each of these impressions."""
        c = self.log.clicks
        mine = np.isin(c.request, sel)
        rows = np.searchsorted(sel, c.request[mine])
        ones = np.ones(rows.size, dtype=np.float32)
        out = sp.csr_matrix((ones, (rows, c.item[mine])), shape=(sel.size, self.log.n_items))
        out.data[:] = 1.0
        return out


def serve(
    replay: Replay, blend: Blend, users: IntArray, max_age_s: float
) -> tuple[Candidates, FloatMatrix, sp.csr_matrix, sp.csr_matrix]:
    """``(candidates, features [rows, blend + context], history, excluded)`` for ``users``."""
    history = replay.histories(users)
    excluded = np.broadcast_to(~replay.live(max_age_s), (users.size, replay.log.n_items)).copy()
    excluded[history.nonzero()] = True
    exclude = sp.csr_matrix(excluded)
    cands = blend.generate(users, history, exclude)
    rows = cands.items.astype(np.int64)
    context = replay.context(users).features(users[cands.row_user()], rows)
    features = np.hstack([cands.features, context]).astype(np.float32, copy=False)
    return cands, features, history, exclude


def shown_positions(slates: IntArray, cands: Candidates) -> IntArray:
    """Logged position of every candidate row in its request's slate (``slates[row_user]``),
    -1 where the candidate was not shown."""
    n_items = int(max(slates.max(initial=0), cands.items.max(initial=0))) + 1
    req, pos = np.nonzero(slates >= 0)
    keys = req * n_items + slates[req, pos]
    order = np.argsort(keys, kind="stable")
    keys, pos = keys[order], pos[order]
    query = cands.row_user() * n_items + cands.items.astype(np.int64)
    if keys.size == 0:
        return np.full(query.size, -1, dtype=np.int64)
    at = np.minimum(np.searchsorted(keys, query), keys.size - 1)
    return np.where(keys[at] == query, pos[at], -1).astype(np.int64)


def sample_unshown(
    cands: Candidates, positions: IntArray, n: int, rng: np.random.Generator
) -> npt.NDArray[np.bool_]:
    """Up to ``n`` never-shown candidates per request, uniformly at random."""
    if n <= 0:
        return np.zeros(positions.size, dtype=bool)
    key = rng.random(positions.size) + (positions >= 0)  # shown rows sort after the others
    order = np.lexsort((key, cands.row_user()))
    rank = np.empty(positions.size, dtype=np.int64)
    rank[order] = np.arange(positions.size) - np.repeat(cands.indptr[:-1], cands.group_sizes())
    return (rank < n) & (positions < 0)
