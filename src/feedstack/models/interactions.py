"""Implicit-feedback interactions: a CSR user × item matrix, its id maps, optional times.

Every candidate source and the ranker read this one shape. Rows are users, columns items, values
are 1.0 (an interaction happened; repeats are collapsed). ``times`` (optional) has exactly the
sparsity of ``matrix`` and holds the event time in seconds of the latest interaction per pair.

Readers live here too: ``read_lightgcn`` for the LightGCN/NGCF text format (``user item item ...``
per line, dense integer ids; Gowalla, Yelp2018, Amazon-Book) and ``split_per_user`` for the
hold-out the two-stage trainer labels its ranker with.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from feedstack.core.errors import InputError

IntArray = npt.NDArray[np.int64]
_SNIFF_BYTES = 8192


@dataclass(frozen=True, slots=True)
class InteractionData:
    """Interactions of ``n_users`` users with ``n_items`` items.

    ``user_ids[row]`` and ``item_ids[col]`` are the external ids (dense ints for the LightGCN
    format, anything hashable that numpy can hold otherwise). ``matrix`` is canonical: CSR,
    float32, sorted indices, no duplicates, every stored value 1.0.
    """

    matrix: sp.csr_matrix
    user_ids: npt.NDArray[np.generic]
    item_ids: npt.NDArray[np.generic]
    times: sp.csr_matrix | None = None

    @property
    def n_users(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def nnz(self) -> int:
        return int(self.matrix.nnz)

    def user_counts(self) -> npt.NDArray[np.int64]:
        return np.asarray(np.diff(self.matrix.indptr), dtype=np.int64)

    def item_counts(self) -> npt.NDArray[np.int64]:
        return np.bincount(self.matrix.indices, minlength=self.n_items).astype(np.int64)

    def data_hash(self) -> str:
        """SHA-256 of the sparsity pattern and shape: the same pairs give the same hash."""
        h = hashlib.sha256()
        h.update(np.asarray(self.matrix.shape, dtype=np.int64).tobytes())
        h.update(self.matrix.indptr.astype(np.int64).tobytes())
        h.update(self.matrix.indices.astype(np.int64).tobytes())
        return h.hexdigest()

    def with_matrix(
        self, matrix: sp.csr_matrix, times: sp.csr_matrix | None = None
    ) -> InteractionData:
        """The same id maps over other pairs (a split of this data, a test file)."""
        return InteractionData(canonical(matrix), self.user_ids, self.item_ids, times)

    @classmethod
    def from_pairs(
        cls,
        users: npt.ArrayLike,
        items: npt.ArrayLike,
        n_users: int | None = None,
        n_items: int | None = None,
        times: npt.ArrayLike | None = None,
    ) -> InteractionData:
        """Build from dense integer (user, item) pairs; ids are the indices themselves."""
        u = np.asarray(users, dtype=np.int64)
        i = np.asarray(items, dtype=np.int64)
        if u.shape != i.shape:
            raise InputError(f"users and items differ in length: {u.shape} vs {i.shape}")
        if u.size and (u.min() < 0 or i.min() < 0):
            raise InputError("user and item ids must be non-negative")
        nu = int(n_users if n_users is not None else (u.max() + 1 if u.size else 0))
        ni = int(n_items if n_items is not None else (i.max() + 1 if i.size else 0))
        if u.size and (u.max() >= nu or i.max() >= ni):
            raise InputError(f"ids out of range for a {nu} × {ni} matrix")
        ones = np.ones(u.size, dtype=np.float32)
        matrix = canonical(sp.csr_matrix((ones, (u, i)), shape=(nu, ni)))
        tmat = None
        if times is not None:
            t = np.asarray(times, dtype=np.float64)
            # The latest time per pair: max-reduce duplicates through a sort, not a sum.
            order = np.lexsort((t, i, u))
            u_s, i_s, t_s = u[order], i[order], t[order]
            last = np.ones(u_s.size, dtype=bool)
            last[:-1] = (u_s[1:] != u_s[:-1]) | (i_s[1:] != i_s[:-1])
            tmat = sp.csr_matrix((t_s[last], (u_s[last], i_s[last])), shape=(nu, ni))
            tmat.sort_indices()
        return cls(matrix, np.arange(nu, dtype=np.int64), np.arange(ni, dtype=np.int64), tmat)


def canonical(matrix: sp.spmatrix | sp.sparray) -> sp.csr_matrix:
    """CSR, float32, sorted, duplicates collapsed, every stored value 1.0."""
    m = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    m.sum_duplicates()
    m.eliminate_zeros()
    m.data[:] = 1.0
    m.sort_indices()
    return m


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise InputError(f"{path}: {'is a directory' if path.is_dir() else 'no such file'}")
    try:
        with path.open("rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if b"\x00" in head:
        raise InputError(f"{path}: looks binary (NUL byte in the first {_SNIFF_BYTES} bytes)")


def _parse_lightgcn(path: Path) -> tuple[IntArray, IntArray]:
    _check_file(path)
    users: list[IntArray] = []
    items: list[IntArray] = []
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            tokens = raw.split()
            if not tokens:
                continue
            if not all(t.isdigit() for t in tokens):
                bad = next(t for t in tokens if not t.isdigit())
                raise InputError(
                    f"{path}:{number}: not the LightGCN format "
                    f"(expected 'user item item ...' of non-negative integers, got {bad[:40]!r})"
                )
            row = np.array(tokens, dtype=np.int64)
            items.append(row[1:])
            users.append(np.full(row.size - 1, row[0], dtype=np.int64))
    if not users:
        raise InputError(f"{path}: no lines")
    return np.concatenate(users), np.concatenate(items)


def read_lightgcn(*paths: Path) -> list[InteractionData]:
    """Read LightGCN files (``train.txt``, ``test.txt``, ...) into one shared id space.

    The ids in this format are already dense integers; every returned matrix has the shape
    (1 + largest user id, 1 + largest item id) over all the files, so that a test matrix lines
    up with its train matrix.
    """
    parsed = [_parse_lightgcn(Path(p)) for p in paths]
    n_users = 1 + max((int(u.max()) for u, _ in parsed if u.size), default=-1)
    n_items = 1 + max((int(i.max()) for _, i in parsed if i.size), default=-1)
    return [InteractionData.from_pairs(u, i, n_users, n_items) for u, i in parsed]


def split_per_user(
    data: InteractionData, fraction: float, seed: int = 0
) -> tuple[InteractionData, InteractionData]:
    """Hold out ``fraction`` of each user's interactions: ``(rest, held)``.

    The share held out of a user with n >= 2 interactions is round(fraction × n), at least 1 and
    at most n - 1, so every user keeps a history. With ``times`` the latest interactions are held
    out (a time split, as serving sees it); without, a random choice (the LightGCN/NGCF split).
    """
    if not 0.0 < fraction < 1.0:
        raise InputError(f"hold-out fraction must be in (0, 1), got {fraction}")
    m = data.matrix
    counts = np.diff(m.indptr)
    n_held = np.where(counts >= 2, np.clip(np.rint(fraction * counts), 1, counts - 1), 0)
    rng = np.random.default_rng(seed)
    # A per-row rank of a random key (or of the time): position < n_held means held out.
    key = rng.random(m.nnz) if data.times is None else -data.times.data
    row = np.repeat(np.arange(m.shape[0]), counts)
    order = np.lexsort((key, row))
    rank = np.empty(m.nnz, dtype=np.int64)
    rank[order] = np.arange(m.nnz) - np.repeat(m.indptr[:-1], counts)
    held_mask = rank < np.repeat(n_held, counts)

    def part(mask: npt.NDArray[np.bool_]) -> tuple[sp.csr_matrix, sp.csr_matrix | None]:
        coo = sp.csr_matrix((m.data[mask], (row[mask], m.indices[mask])), shape=m.shape)
        t = None
        if data.times is not None:
            t = sp.csr_matrix((data.times.data[mask], (row[mask], m.indices[mask])), shape=m.shape)
            t.sort_indices()
        return coo, t

    rest_m, rest_t = part(~held_mask)
    held_m, held_t = part(held_mask)
    return data.with_matrix(rest_m, rest_t), data.with_matrix(held_m, held_t)
