"""The candidate cache: per user, the batch job's top candidates, read once per feed request.

Contract (every backend, proved by tests/contract/test_candidate_cache.py):
- ``put_many({user: CandidateList})`` stores whole lists (a reader sees the old list or the new
  one, never a mix); a later put of the same user replaces the list.
- ``get(user)`` is ONE read (one Redis GET, one SQLite row; a catalog is read once per handle):
  the list as put (ids, sources, the candidate-model version exactly; scores and features as
  the encoding keeps them, below), or None for a user the cache has no list for.
- A backend that cannot be reached raises BackendUnavailable (the server degrades, it never
  errors); a read is bounded by the backend's timeout.
- An entry that does not decode (torn, truncated, another format) raises DataError, never
  another exception: the server answers that user from the fallback lists (``cache_corrupt``).

Encoding (``encode``/``decode``; no pickle): ``storage/candidate_codec.py``. Lists are written
as ``FSC2``: ids as indices into a per-version *catalog* (stored once next to the lists),
first-stage score and features each in the cheapest exact code (constant, small integer, a
multiple of another column) or quantized to 8 bits, zlib over the body. So a round trip keeps
ids, sources, version, build time and every exactly coded column bit for bit, and a quantized
value within half a step; ``decode(encode(c))`` is a fixed point (``encode`` of a decoded list
returns its own bytes).
``FSC1`` entries (float32, the first format) still decode; any other bytes are a DataError.

Backends by URL (spec key ``backends.candidate_cache``): ``memory://``, ``sqlite://PATH``,
``redis://host:port/db?prefix=P`` (keys ``P:cand:<user>`` and ``P:catalog:<id>``).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from feedstack.core.errors import BackendUnavailable, DataError
from feedstack.core.redact import redact_url
from feedstack.storage.candidate_codec import MAGIC_V2, Catalog, decode_any, encode_v2
from feedstack.storage.urls import parse_backend_url

CANDIDATE_CACHE_SCHEMES = ("memory", "sqlite", "redis")
MAGIC = MAGIC_V2  # what encode writes (FSC1 is still read)
OPEN_TIMEOUT_MS = 10_000
KEPT_CATALOGS = 8  # catalogs a reader keeps in memory (a version's, a canary's, ...)


@dataclass(frozen=True, eq=False)
class CandidateList:
    """One user's candidates in first-stage order (best first)."""

    version: str  # the candidate model (a model folder name)
    built_at_s: float  # Unix seconds: the state the features are as of
    items: list[str]
    scores: npt.NDArray[np.float32]  # first-stage score, higher is better
    sources: npt.NDArray[np.uint8]  # index into source_names: the source that proposed it
    source_names: tuple[str, ...]
    features: npt.NDArray[np.float32]  # [n, len(feature_names)] first-stage ranking features
    feature_names: tuple[str, ...]
    # The ids the encoding indexes (default: the ids of the lists put together); set by decode.
    catalog: Catalog | None = field(default=None, compare=False)
    raw: bytes | None = field(default=None, compare=False, repr=False)  # as decoded (FSC2)
    group: str | None = None  # whose shared catalog tables apply (the user's region), if any

    def __post_init__(self) -> None:
        n = len(self.items)
        if self.scores.shape != (n,) or self.sources.shape != (n,):
            raise DataError(f"candidate list: {n} items but scores/sources of other lengths")
        if self.features.shape != (n, len(self.feature_names)):
            raise DataError(
                f"candidate list: features {self.features.shape}, "
                f"expected ({n}, {len(self.feature_names)})"
            )
        if n and int(self.sources.max()) >= len(self.source_names):
            raise DataError("candidate list: a source index past source_names")

    def __len__(self) -> int:
        return len(self.items)

    def same_as(self, other: CandidateList) -> bool:
        """Equal field by field, arrays bit for bit (what a round trip must keep)."""
        return (
            self.version == other.version
            and self.built_at_s == other.built_at_s
            and self.items == other.items
            and self.source_names == other.source_names
            and self.feature_names == other.feature_names
            and self.scores.tobytes() == other.scores.tobytes()
            and self.sources.tobytes() == other.sources.tobytes()
            and self.features.tobytes() == other.features.tobytes()
        )


def encode(c: CandidateList, catalog: Catalog | None = None) -> bytes:
    """``FSC2`` bytes of ``c`` with ids indexing ``catalog`` (default: ``c.catalog``, else a
    catalog of ``c``'s own ids; a backend stores the catalog next to the list)."""
    for item in c.items:
        if "\x00" in item:
            raise DataError(f"candidate id {item!r}: contains NUL")
    cat = catalog or c.catalog or Catalog.of(c.items)
    if c.raw is not None and c.raw[:4] == MAGIC_V2 and c.catalog is cat:
        return c.raw  # a decoded list re-put: the same bytes (quantizing is not idempotent)
    return encode_v2(
        c.version, c.built_at_s, c.items, c.scores, c.sources, c.source_names,
        c.features, c.feature_names, cat, c.group,
    )  # fmt: skip


def decode(raw: bytes, resolve: Callable[[str], Catalog] | None = None) -> CandidateList:
    """The list in ``raw`` (``resolve`` maps an FSC2 entry's catalog id to the catalog); a
    DataError for anything that is not a whole, consistent entry (a torn write, another format,
    a catalog nobody stored, bytes someone else put under our key): never another error."""
    d = decode_any(raw, resolve)
    return CandidateList(
        d.version, d.built_at_s, d.items, d.scores, d.sources, d.source_names, d.features,
        d.feature_names, d.catalog, raw if raw[:4] == MAGIC_V2 else None, d.group,
    )  # fmt: skip


def with_catalogs(
    lists: Mapping[str, CandidateList],
) -> tuple[dict[str, CandidateList], list[Catalog]]:
    """Every list with a catalog (those without one share a catalog of their ids) and the
    distinct catalogs, to be stored before the lists."""
    bare = [c for c in lists.values() if c.catalog is None]
    shared = Catalog.of(sorted({i for c in bare for i in c.items})) if bare else None
    out: dict[str, CandidateList] = {}
    cats: dict[str, Catalog] = {}
    for u, c in lists.items():
        if c.catalog is None and shared is not None:
            c = CandidateList(
                c.version, c.built_at_s, c.items, c.scores, c.sources, c.source_names,
                c.features, c.feature_names, shared, None, c.group,
            )  # fmt: skip
        if c.catalog is not None:
            cats[c.catalog.id] = c.catalog
        out[u] = c
    return out, list(cats.values())


class _Catalogs:
    """The catalogs one backend handle has read or written: read once, then from memory."""

    def __init__(self, load: Callable[[str], bytes | None], name: str) -> None:
        self._load = load
        self._name = name
        self._known: dict[str, Catalog] = {}
        self._lock = threading.Lock()

    def remember(self, cat: Catalog) -> bool:
        """True when ``cat`` is new to this handle (the caller stores it)."""
        with self._lock:
            fresh = cat.id not in self._known
            self._keep(cat)
        return fresh

    def _keep(self, cat: Catalog) -> None:
        self._known[cat.id] = cat
        while len(self._known) > KEPT_CATALOGS:
            self._known.pop(next(iter(self._known)))

    def __call__(self, cid: str) -> Catalog:
        with self._lock:
            got = self._known.get(cid)
        if got is not None:
            return got
        raw = self._load(cid)
        if raw is None:
            raise DataError(f"candidate cache {self._name}: catalog {cid} is missing (rebuild)")
        cat = Catalog.from_bytes(raw, cid)
        with self._lock:
            self._keep(cat)
        return cat


class CandidateCache(Protocol):
    url: str

    def get(self, user_id: str) -> CandidateList | None:
        """The user's list, or None; one backend read."""
        ...

    def put_many(self, lists: Mapping[str, CandidateList]) -> int:
        """Store the lists (each replaces the user's previous one); returns the bytes written."""
        ...

    def count(self) -> int:
        """How many users have a list."""
        ...

    def close(self) -> None: ...


class MemoryCandidateCache:
    """In-process (tests, one-process demos): the same encoded bytes as the other backends."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._data: dict[str, bytes] = {}
        self._catalog_bytes: dict[str, bytes] = {}
        self.catalogs = _Catalogs(self._catalog_bytes.get, url)
        self._closed = False

    def get(self, user_id: str) -> CandidateList | None:
        if self._closed:
            raise BackendUnavailable(f"candidate cache {self.url}: closed")
        raw = self._data.get(user_id)
        return None if raw is None else decode(raw, self.catalogs)

    def put_many(self, lists: Mapping[str, CandidateList]) -> int:
        ready, cats = with_catalogs(lists)
        for cat in cats:
            if self.catalogs.remember(cat) or cat.id not in self._catalog_bytes:
                self._catalog_bytes[cat.id] = cat.to_bytes()
        encoded = {u: encode(c) for u, c in ready.items()}
        self._data.update(encoded)
        return sum(len(b) for b in encoded.values())

    def count(self) -> int:
        return len(self._data)

    def close(self) -> None:
        self._closed = True


class SqliteCandidateCache:
    """One table (user TEXT PRIMARY KEY, list BLOB) in WAL mode: readers never block the batch
    job's writer. One connection per thread (sqlite3 connections are not shared safely)."""

    def __init__(self, path: Path, url: str | None = None, timeout_s: float = 0.5) -> None:
        self.path = path
        self.url = url or f"sqlite://{path}"
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self.catalogs = _Catalogs(self._read_catalog, self.url)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = self._db()
            # Opening waits longer than a read may: serving workers open the cache at once, and
            # switching to WAL or creating the table takes a lock another one may hold.
            db.execute(f"PRAGMA busy_timeout={OPEN_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS candidates (user TEXT PRIMARY KEY, list BLOB)")
            db.execute("CREATE TABLE IF NOT EXISTS catalogs (id TEXT PRIMARY KEY, ids BLOB)")
            db.execute(f"PRAGMA busy_timeout={max(1, round(timeout_s * 1000))}")
        except (sqlite3.Error, OSError) as exc:
            raise BackendUnavailable(f"candidate cache {self.url}: {exc}") from exc

    def _db(self) -> sqlite3.Connection:
        if self._closed:
            raise BackendUnavailable(f"candidate cache {self.url}: closed")
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(
                self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False
            )
            self._local.db = db
            with self._lock:
                self._conns.append(db)
        return db

    def get(self, user_id: str) -> CandidateList | None:
        try:
            row = (
                self._db()
                .execute("SELECT list FROM candidates WHERE user = ?", (user_id,))
                .fetchone()
            )
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"candidate cache {self.url}: read failed: {exc}") from exc
        return None if row is None else decode(bytes(row[0]), self.catalogs)

    def _read_catalog(self, cid: str) -> bytes | None:
        try:
            row = self._db().execute("SELECT ids FROM catalogs WHERE id = ?", (cid,)).fetchone()
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"candidate cache {self.url}: read failed: {exc}") from exc
        return None if row is None else bytes(row[0])

    def put_many(self, lists: Mapping[str, CandidateList]) -> int:
        ready, cats = with_catalogs(lists)
        rows = [(u, encode(c)) for u, c in ready.items()]
        try:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                for cat in cats:  # the catalog commits with (before) the lists that index it
                    db.execute(
                        "INSERT OR IGNORE INTO catalogs VALUES (?, ?)", (cat.id, cat.to_bytes())
                    )
                    self.catalogs.remember(cat)
                db.executemany("INSERT OR REPLACE INTO candidates VALUES (?, ?)", rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"candidate cache {self.url}: write failed: {exc}") from exc
        return sum(len(b) for _, b in rows)

    def count(self) -> int:
        return int(self._db().execute("SELECT COUNT(*) FROM candidates").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            for db in self._conns:
                db.close()
            self._conns.clear()
            self._closed = True


class RedisCandidateCache:
    """``{prefix}:cand:<user>`` -> the encoded list: one GET per request. Writes go in pipelined
    chunks (MSET-like, no transaction: each key is replaced atomically on its own)."""

    def __init__(self, url: str, prefix: str = "feedstack", timeout_s: float = 0.5) -> None:
        import redis

        from feedstack.storage.urls import strip_prefix

        self.url = redact_url(url)  # shown in messages and reports; the client keeps the real one
        self.prefix = prefix
        self._error: type[Exception] = redis.RedisError
        # Short socket timeouts: a stuck server costs one stage budget, then the server degrades.
        self._r: Any = redis.Redis.from_url(
            strip_prefix(url), socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self.catalogs = _Catalogs(self._read_catalog, self.url)

    def key(self, user_id: str) -> str:
        return f"{self.prefix}:cand:{user_id}"

    def catalog_key(self, cid: str) -> str:
        return f"{self.prefix}:catalog:{cid}"

    def get(self, user_id: str) -> CandidateList | None:
        try:
            raw = self._r.get(self.key(user_id))
        except self._error as exc:
            raise BackendUnavailable(f"candidate cache {self.url}: read failed: {exc}") from exc
        return None if raw is None else decode(bytes(raw), self.catalogs)

    def _read_catalog(self, cid: str) -> bytes | None:
        try:
            raw = self._r.get(self.catalog_key(cid))
        except self._error as exc:
            raise BackendUnavailable(f"candidate cache {self.url}: read failed: {exc}") from exc
        return None if raw is None else bytes(raw)

    def put_many(self, lists: Mapping[str, CandidateList], chunk: int = 500) -> int:
        written = 0
        ready, cats = with_catalogs(lists)
        items: Sequence[tuple[str, CandidateList]] = list(ready.items())
        try:
            for cat in cats:  # before the lists that index it; same id, same bytes: idempotent
                if self.catalogs.remember(cat) or not self._r.exists(self.catalog_key(cat.id)):
                    self._r.set(self.catalog_key(cat.id), cat.to_bytes())
            for start in range(0, len(items), chunk):
                with self._r.pipeline(transaction=False) as pipe:
                    for user, c in items[start : start + chunk]:
                        raw = encode(c)
                        written += len(raw)
                        pipe.set(self.key(user), raw)
                    pipe.execute()
        except self._error as exc:
            raise BackendUnavailable(f"candidate cache {self.url}: write failed: {exc}") from exc
        return written

    def count(self) -> int:
        return sum(1 for _ in self._r.scan_iter(f"{self.prefix}:cand:*", count=1000))

    def close(self) -> None:
        self._r.close()


def open_candidate_cache(url: str, project: Path, timeout_s: float = 0.5) -> CandidateCache:
    """The cache named by ``url`` (spec key ``backends.candidate_cache``); ``timeout_s`` bounds
    each read (the serving stage budget)."""
    parsed = parse_backend_url(url, "candidate_cache", CANDIDATE_CACHE_SCHEMES, project)
    if parsed.scheme == "memory":
        return MemoryCandidateCache(url)
    if parsed.scheme == "sqlite":
        assert parsed.path is not None
        return SqliteCandidateCache(parsed.path, url, timeout_s)
    return RedisCandidateCache(url, parsed.prefix, timeout_s)
