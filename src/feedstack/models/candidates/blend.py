"""The candidate blend: the union of every source's top-k per user, cut to the best ``size``,
with every source's scores and ranks kept as ranking features.

Per user and source s with quota k_s, s ranks its top k_s items (rank 0 = best). An item's
priority is min over sources of rank_s / k_s (the best relative position any source gives it);
the union is ordered by priority and cut to ``size`` (ties: the lower item index). So a source
with a larger quota gets more of the list, and the order within the cut is the first-stage order
the ranker improves on.

Features of a candidate (one definition for training rows and serving, habit 5):

- every feature of every source (``feature_scores``) at that item, so every source scores every
  candidate, including those it did not retrieve;
- ``<source>_rank``: its rank in that source's top k_s, k_s when absent;
- ``<source>_rel``: its retrieval score divided by the user's best score in that source (scores
  are comparable within a user only; this makes them comparable across users), and
  ``<feature>_rel`` for each extra feature: divided by its largest magnitude among the user's
  candidates;
- ``history_length``: how many interactions the user's history has.

``sources`` tags each candidate: bit s is set when source s had it in its top k_s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from feedstack.core.errors import InputError
from feedstack.models.candidates.base import CandidateSource, IntArray
from feedstack.models.kernels import FloatMatrix

Progress = Callable[[int], None]  # called with the number of users just finished


@dataclass(frozen=True, slots=True)
class BlendConfig:
    """``size`` candidates per user; ``quotas[name]`` is source name's k (default: ``size``)."""

    size: int = 500
    quotas: Mapping[str, int] = field(default_factory=dict)
    batch_users: int = 1000

    def quota(self, name: str) -> int:
        return int(self.quotas.get(name, self.size))


@dataclass(frozen=True, slots=True)
class Candidates:
    """Candidate lists of ``users``, flattened: user b owns rows ``indptr[b]:indptr[b + 1]``,
    in first-stage order."""

    users: IntArray
    indptr: IntArray
    items: npt.NDArray[np.int32]
    features: FloatMatrix  # [rows, len(feature_names)]
    feature_names: tuple[str, ...]
    sources: npt.NDArray[np.uint32]  # bit s: source_names[s] retrieved this item
    source_names: tuple[str, ...]

    @property
    def n_rows(self) -> int:
        return int(self.items.size)

    def group_sizes(self) -> IntArray:
        return np.diff(self.indptr)

    def positions(self) -> IntArray:
        """For every row, its position in its user's list (0 = first-stage best)."""
        return np.arange(self.n_rows, dtype=np.int64) - np.repeat(
            self.indptr[:-1], self.group_sizes()
        )

    def row_user(self) -> IntArray:
        """For every row, the position of its user in ``users``."""
        return np.repeat(np.arange(self.users.size, dtype=np.int64), self.group_sizes())

    def feature(self, name: str) -> FloatMatrix:
        return self.features[:, self.feature_names.index(name)]

    def labels(self, truth: sp.csr_matrix) -> npt.NDArray[np.float32]:
        """1.0 where the candidate is in the user's row of ``truth`` (indexed by user id)."""
        truth = sp.csr_matrix(truth)
        users = self.users[self.row_user()]
        return np.asarray(truth[users, self.items]).ravel().astype(np.float32)

    def top(self, scores: FloatMatrix, k: int) -> npt.NDArray[np.int32]:
        """Each user's ``k`` best candidates by ``scores`` (one per row), [n_users, k], -1 padded.

        Ties keep the first-stage order.
        """
        row_user = self.row_user()
        order = np.lexsort((np.arange(self.n_rows), -scores, row_user))
        position = np.arange(self.n_rows) - np.repeat(self.indptr[:-1], self.group_sizes())
        keep = position < k
        out = np.full((self.users.size, k), -1, dtype=np.int32)
        out[row_user[keep], position[keep]] = self.items[order][keep]
        return out

    def take(self, rows: npt.NDArray[np.bool_]) -> Candidates:
        """The subset of rows where ``rows`` is True (users and order kept)."""
        counts = np.bincount(self.row_user()[rows], minlength=self.users.size)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return Candidates(
            self.users,
            indptr,
            self.items[rows],
            self.features[rows],
            self.feature_names,
            self.sources[rows],
            self.source_names,
        )


class Blend:
    """Generates ``Candidates`` from fitted sources (names must be unique, at most 32)."""

    def __init__(self, sources: Sequence[CandidateSource], config: BlendConfig) -> None:
        names = [s.name for s in sources]
        if not sources or len(set(names)) != len(names) or len(names) > 32:
            raise InputError(f"blend needs 1 to 32 sources with unique names, got {names}")
        if len({s.n_items for s in sources}) != 1:
            raise InputError("blend sources disagree on the number of items")
        self.sources = list(sources)
        self.config = config
        self.n_items = sources[0].n_items
        names_out: list[str] = []
        for s in self.sources:
            extra = [f"{name}_rel" for name in s.feature_names[1:]]
            names_out += [*s.feature_names, f"{s.name}_rank", f"{s.name}_rel", *extra]
        self.feature_names = (*names_out, "history_length")

    def generate(
        self,
        users: IntArray,
        history: sp.csr_matrix,
        exclude: sp.csr_matrix | None = None,
        progress: Progress | None = None,
    ) -> Candidates:
        """Candidates for ``users`` (history rows aligned); ``exclude``d items never are."""
        users = np.asarray(users, dtype=np.int64)
        history = sp.csr_matrix(history, dtype=np.float32)
        if history.shape != (users.size, self.n_items):
            raise InputError(f"history shape {history.shape} != ({users.size}, {self.n_items})")
        parts: list[tuple[IntArray, npt.NDArray[np.int32], FloatMatrix, npt.NDArray[np.uint32]]]
        parts = []
        step = max(1, self.config.batch_users)
        for start in range(0, users.size, step):
            stop = min(users.size, start + step)
            ex = None if exclude is None else sp.csr_matrix(exclude[start:stop])
            parts.append(self._batch(users[start:stop], history[start:stop], ex))
            if progress is not None:
                progress(stop - start)
        counts = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
        return Candidates(
            users,
            np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int32),
            np.concatenate([p[2] for p in parts])
            if parts
            else np.zeros((0, len(self.feature_names)), np.float32),
            self.feature_names,
            np.concatenate([p[3] for p in parts]) if parts else np.zeros(0, np.uint32),
            tuple(s.name for s in self.sources),
        )

    def _batch(
        self, users: IntArray, history: sp.csr_matrix, exclude: sp.csr_matrix | None
    ) -> tuple[IntArray, npt.NDArray[np.int32], FloatMatrix, npt.NDArray[np.uint32]]:
        n = users.size
        dense = [s.feature_scores(users, history) for s in self.sources]
        quotas = [min(self.config.quota(s.name), self.n_items) for s in self.sources]
        tops: list[tuple[npt.NDArray[np.int32], FloatMatrix]] = []
        for s, scores, k in zip(self.sources, dense, quotas, strict=True):
            # Excluded items never become candidates, so their features are never read: the
            # source may mask its retrieval scores in place.
            tops.append(s.select(scores[s.name], k, exclude))

        # The union, ordered by priority min_s rank_s / k_s.
        row = np.concatenate([np.repeat(np.arange(n), k) for k in quotas])
        item = np.concatenate([idx.ravel() for idx, _ in tops]).astype(np.int64)
        prio = np.concatenate([np.tile(np.arange(k) / k, n) for k in quotas])
        valid = item >= 0
        row, item, prio = row[valid], item[valid], prio[valid]
        order = np.lexsort((item, prio, row))
        row, item, prio = row[order], item[order], prio[order]
        key = row * self.n_items + item
        _, first = np.unique(key, return_index=True)  # first = lowest priority per (row, item)
        first.sort()
        row, item = row[first], item[first]
        position = np.arange(row.size) - np.searchsorted(row, row, side="left")
        keep = position < self.config.size
        row, item = row[keep], item[keep]
        counts = np.bincount(row, minlength=n).astype(np.int64)

        columns: list[FloatMatrix] = []
        bits = np.zeros(row.size, dtype=np.uint32)
        key = row * self.n_items + item
        for s_i, (s, scores, k, (idx, val)) in enumerate(
            zip(self.sources, dense, quotas, tops, strict=True)
        ):
            columns += [np.asarray(scores[name][row, item]) for name in s.feature_names]
            rank = _ranks(idx, key, self.n_items)
            columns.append(rank)
            bits |= np.where(rank < k, np.uint32(1 << s_i), np.uint32(0))
            best = val[:, 0] if k > 0 else np.zeros(n, np.float32)
            scale = np.where(np.isfinite(best) & (np.abs(best) > 0), np.abs(best), 1.0)
            columns.append((scores[s.name][row, item] / scale[row]).astype(np.float32))
            for name in s.feature_names[1:]:
                columns.append(_relative_to_best(scores[name][row, item], row, counts))
        columns.append(np.diff(history.indptr)[row].astype(np.float32))
        features = np.stack(columns, axis=1).astype(np.float32, copy=False)
        return counts, item.astype(np.int32), features, bits


def _ranks(top: npt.NDArray[np.int32], keys: IntArray, n_items: int) -> FloatMatrix:
    """Rank of each (row * n_items + item) key in ``top`` (row-wise best first); k if absent."""
    n, k = top.shape
    own = np.arange(n, dtype=np.int64)[:, None] * n_items + top
    rank = np.broadcast_to(np.arange(k, dtype=np.float32), (n, k))
    valid = top >= 0
    own, rank = own[valid], rank[valid]
    order = np.argsort(own, kind="stable")
    own, rank = own[order], rank[order]
    out = np.full(keys.size, np.float32(k), dtype=np.float32)
    if own.size:
        pos = np.minimum(np.searchsorted(own, keys), own.size - 1)
        hit = own[pos] == keys
        out[hit] = rank[pos[hit]]
    return out


def _relative_to_best(values: FloatMatrix, row: IntArray, counts: IntArray) -> FloatMatrix:
    """``values`` divided by the largest magnitude among the same user's rows (rows grouped)."""
    mag = np.abs(values)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    best = np.zeros(counts.size, dtype=np.float32)
    has = counts > 0
    best[has] = np.maximum.reduceat(mag, starts[has])
    scale = np.where(best > 0, best, 1.0).astype(np.float32)
    return (values / scale[row]).astype(np.float32)
