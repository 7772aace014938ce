"""The candidate-source contract: what every retrieval model offers the blend, ranker and server.

Trainer vs artifact (style habit 6):

- a **trainer** (``SourceTrainer``) is a small frozen config: ``name`` and ``fit(data) -> source``;
- a **source** (``CandidateSource``) is the fitted artifact: it scores, recommends, saves, loads.

A user is described by a history, not only by an index. Every call takes ``users`` (row indices
in the data the source was fitted on, for sources that keep per-user state) and ``history`` (CSR
[len(users), n_items] of those users' interactions, rows aligned with ``users``). Item-based
sources read only ``history``, so a user with new clicks, or one unseen at fit time, is scored
from what they did, without a refit.

The primitive is ``feature_scores``: full-catalog float32 scores [n, n_items] for each of the
source's features. The first feature is named like the source and is its retrieval score; more
(for example the two terms of a filter) are extra ranking features. ``recommend`` (top-k) and
``score`` (any candidate, so that every source scores every candidate as a ranking feature)
derive from it; a source with a cheaper way may override them. Scores compare within one user,
not across users.

Saving writes ``source.json`` (kind, name, params, data hash) and ``arrays.npz`` into a folder;
loading reads them with ``allow_pickle=False``. ``feedstack.models.candidates.load_source`` picks
the class from ``kind``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from feedstack.core.errors import InputError
from feedstack.models.interactions import InteractionData
from feedstack.models.kernels import FloatMatrix, IndexMatrix, top_k

IntArray = npt.NDArray[np.int64]
Arrays = dict[str, npt.NDArray[Any]]

FORMAT_VERSION = 1
META_FILE = "source.json"
ARRAYS_FILE = "arrays.npz"


class CandidateSource(ABC):
    """A fitted retrieval model over a catalog of ``n_items`` items."""

    kind: ClassVar[str]  # registry key, stored in source.json

    def __init__(self, name: str, n_items: int, data_hash: str) -> None:
        self.name = name
        self.n_items = n_items
        self.data_hash = data_hash  # of the interactions it was fitted on

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the columns ``feature_scores`` returns; the first is ``name``."""
        return (self.name,)

    @abstractmethod
    def feature_scores(self, users: IntArray, history: sp.csr_matrix) -> dict[str, FloatMatrix]:
        """{feature name: float32 [len(users), n_items]} for every name in ``feature_names``.

        The arrays belong to the caller, who may write into them, except read-only ones (a
        source may return a broadcast view when every row is the same): copy those first.
        """

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """JSON-able hyper-parameters (what the trainer was given), stored beside the arrays."""

    @abstractmethod
    def arrays(self) -> Arrays:
        """The fitted state as plain numpy arrays (sparse matrices as their CSR parts)."""

    @classmethod
    @abstractmethod
    def from_arrays(
        cls, name: str, n_items: int, data_hash: str, params: Mapping[str, Any], arrays: Arrays
    ) -> Self:
        """Rebuild the source ``arrays()`` and ``params()`` came from."""

    def scores(self, users: IntArray, history: sp.csr_matrix) -> FloatMatrix:
        """Retrieval scores, float32 [len(users), n_items]."""
        return self.feature_scores(users, history)[self.name]

    def recommend(
        self,
        users: IntArray,
        history: sp.csr_matrix,
        k: int,
        exclude: sp.csr_matrix | None = None,
    ) -> tuple[IndexMatrix, FloatMatrix]:
        """Top ``k`` items per user, best first: ``(items int32 [n, k], scores float32 [n, k])``.

        Items stored in ``exclude`` (CSR aligned with ``users``; pass ``history`` to drop what a
        user already has) are never returned; short rows are padded with item -1, score -inf.
        """
        return self.select(self.scores(users, self.check(users, history)), k, exclude)

    def select(
        self, scores: FloatMatrix, k: int, exclude: sp.csr_matrix | None = None
    ) -> tuple[IndexMatrix, FloatMatrix]:
        """Top ``k`` of retrieval ``scores`` this source computed, without ``exclude``d items.

        May write into ``scores`` (unless read-only). A source whose scores have structure (the
        same row for every user) may override it with something cheaper than a full scan.
        """
        if exclude is not None:
            if not scores.flags.writeable:
                scores = scores.copy()
            mask_items(scores, exclude)
        return top_k(scores, k)

    def score(self, users: IntArray, history: sp.csr_matrix, items: IndexMatrix) -> FloatMatrix:
        """Retrieval scores of given items, float32 [n, m] for ``items`` [n, m] (-1 gives -inf)."""
        scores = self.scores(users, self.check(users, history))
        return gather(scores, items)

    def check(self, users: IntArray, history: sp.csr_matrix) -> sp.csr_matrix:
        """``history`` as canonical CSR float32, or InputError if it does not fit ``users``."""
        if history.shape != (len(users), self.n_items):
            raise InputError(
                f"{self.name}: history has shape {history.shape}, "
                f"expected ({len(users)}, {self.n_items}) for {len(users)} users"
            )
        if not isinstance(history, sp.csr_matrix) or history.dtype != np.float32:
            return sp.csr_matrix(history, dtype=np.float32)
        return history

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT_VERSION,
            "kind": self.kind,
            "name": self.name,
            "n_items": self.n_items,
            "data_hash": self.data_hash,
            "params": self.params(),
        }
        arrays: dict[str, Any] = self.arrays()
        np.savez(folder / ARRAYS_FILE, **arrays)
        (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> Self:
        meta = read_meta(folder)
        if meta["kind"] != cls.kind:
            raise InputError(f"{folder}: a {meta['kind']!r} source, not {cls.kind!r}")
        with np.load(folder / ARRAYS_FILE, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        return cls.from_arrays(
            meta["name"], int(meta["n_items"]), meta["data_hash"], meta["params"], arrays
        )


class SourceTrainer(Protocol):
    """A candidate source's hyper-parameters; ``fit`` returns the artifact."""

    @property
    def name(self) -> str: ...

    def fit(self, data: InteractionData) -> CandidateSource: ...


def read_meta(folder: Path) -> dict[str, Any]:
    path = folder / META_FILE
    try:
        meta: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a saved candidate source ({exc})") from None
    if meta.get("format") != FORMAT_VERSION:
        raise InputError(f"{path}: format {meta.get('format')!r}, expected {FORMAT_VERSION}")
    return meta


def mask_items(scores: FloatMatrix, items: sp.csr_matrix) -> None:
    """Set ``scores[u, i] = -inf`` for every pair stored in ``items`` (rows aligned), in place."""
    rows = np.repeat(np.arange(items.shape[0]), np.diff(items.indptr))
    scores[rows, items.indices] = -np.inf


def gather(scores: FloatMatrix, items: IndexMatrix) -> FloatMatrix:
    """``scores[u, items[u, j]]`` as float32 [n, m]; item -1 (padding) gives -inf."""
    out = np.take_along_axis(scores, np.maximum(items, 0), axis=1).astype(np.float32, copy=False)
    return np.where(items >= 0, out, np.float32(-np.inf))


def csr_arrays(prefix: str, m: sp.csr_matrix) -> Arrays:
    """A CSR matrix as plain arrays (npz holds no sparse objects without pickle)."""
    return {
        f"{prefix}_data": m.data,
        f"{prefix}_indices": m.indices,
        f"{prefix}_indptr": m.indptr,
        f"{prefix}_shape": np.asarray(m.shape, dtype=np.int64),
    }


def csr_from(prefix: str, arrays: Arrays) -> sp.csr_matrix:
    shape = tuple(int(x) for x in arrays[f"{prefix}_shape"])
    return sp.csr_matrix(
        (arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"]),
        shape=shape,
    )
