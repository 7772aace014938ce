"""The candidate cache: per user, the batch job's top candidates, read once per feed request.

Contract (every backend, proved by tests/contract/test_candidate_cache.py):
- ``put_many({user: CandidateList})`` stores whole lists (a reader sees the old list or the new
  one, never a mix); a later put of the same user replaces the list.
- ``get(user)`` is ONE read (one Redis GET, one SQLite row): the list exactly as put (ids, scores,
  sources, first-stage features bit for bit, the candidate-model version), or None for a user the
  cache has no list for.
- A backend that cannot be reached raises BackendUnavailable (the server degrades, it never
  errors); a read is bounded by the backend's timeout.
- An entry that does not decode (torn, truncated, another format) raises DataError, never
  another exception: the server answers that user from the fallback lists (``cache_corrupt``).

Encoding (``encode``/``decode``; no pickle): ``FSC1`` | u32 header length | header JSON (version,
build time, source names, feature names, n) | float32 scores [n] | uint8 source [n] | float32
features [n, F] (C order) | the ids, UTF-8, joined by NUL. A list of 500 candidates with 20
features is about 47 KB, of which the features are 40 KB: see docs/serving.md for what a
smaller form would cost.

Backends by URL (spec key ``backends.candidate_cache``): ``memory://``, ``sqlite://PATH``,
``redis://host:port/db?prefix=P`` (key ``P:cand:<user>``).
"""

from __future__ import annotations

import sqlite3
import struct
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import orjson

from feedstack.core.errors import BackendUnavailable, DataError
from feedstack.core.redact import redact_url
from feedstack.storage.urls import parse_backend_url

CANDIDATE_CACHE_SCHEMES = ("memory", "sqlite", "redis")
MAGIC = b"FSC1"
OPEN_TIMEOUT_MS = 10_000
_HEAD = struct.Struct("<4sI")


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


def encode(c: CandidateList) -> bytes:
    for item in c.items:
        if "\x00" in item:
            raise DataError(f"candidate id {item!r}: contains NUL")
    header = orjson.dumps(
        {
            "version": c.version,
            "built_at_s": c.built_at_s,
            "sources": list(c.source_names),
            "features": list(c.feature_names),
            "n": len(c.items),
        }
    )
    return b"".join(
        (
            _HEAD.pack(MAGIC, len(header)),
            header,
            np.ascontiguousarray(c.scores, dtype="<f4").tobytes(),
            np.ascontiguousarray(c.sources, dtype=np.uint8).tobytes(),
            np.ascontiguousarray(c.features, dtype="<f4").tobytes(),
            "\x00".join(c.items).encode(),
        )
    )


def decode(raw: bytes) -> CandidateList:
    """The list in ``raw``; DataError for anything that is not a whole, consistent entry (a
    torn write, another format, bytes someone else put under our key): never another error."""
    try:
        return _decode(raw)
    except DataError:
        raise
    except (ValueError, TypeError, KeyError, struct.error, UnicodeDecodeError) as exc:
        # orjson.JSONDecodeError and numpy's short-buffer errors are ValueErrors.
        raise DataError(f"candidate cache entry: corrupt ({type(exc).__name__})") from None


def _decode(raw: bytes) -> CandidateList:
    if len(raw) < _HEAD.size:
        raise DataError("candidate cache entry: truncated")
    magic, head_len = _HEAD.unpack_from(raw)
    if magic != MAGIC:
        raise DataError(f"candidate cache entry: unknown format {magic!r}")
    at = _HEAD.size
    h: dict[str, Any] = orjson.loads(raw[at : at + head_len])
    at += head_len
    n, f = int(h["n"]), len(h["features"])
    if n < 0 or len(raw) < at + n * (5 + 4 * f):
        raise DataError(f"candidate cache entry: truncated ({len(raw)} bytes for {n} items)")
    scores = np.frombuffer(raw, "<f4", n, at).astype(np.float32)
    at += 4 * n
    sources = np.frombuffer(raw, np.uint8, n, at).copy()
    at += n
    features = np.frombuffer(raw, "<f4", n * f, at).astype(np.float32).reshape(n, f)
    at += 4 * n * f
    items = raw[at:].decode().split("\x00") if n else []
    if len(items) != n:
        raise DataError(f"candidate cache entry: {len(items)} ids for {n} candidates")
    return CandidateList(
        str(h["version"]),
        float(h["built_at_s"]),
        items,
        scores,
        sources,
        tuple(str(x) for x in h["sources"]),
        features,
        tuple(str(x) for x in h["features"]),
    )


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
        self._closed = False

    def get(self, user_id: str) -> CandidateList | None:
        if self._closed:
            raise BackendUnavailable(f"candidate cache {self.url}: closed")
        raw = self._data.get(user_id)
        return None if raw is None else decode(raw)

    def put_many(self, lists: Mapping[str, CandidateList]) -> int:
        encoded = {u: encode(c) for u, c in lists.items()}
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
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = self._db()
            # Opening waits longer than a read may: serving workers open the cache at once, and
            # switching to WAL or creating the table takes a lock another one may hold.
            db.execute(f"PRAGMA busy_timeout={OPEN_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS candidates (user TEXT PRIMARY KEY, list BLOB)")
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
        return None if row is None else decode(bytes(row[0]))

    def put_many(self, lists: Mapping[str, CandidateList]) -> int:
        rows = [(u, encode(c)) for u, c in lists.items()]
        try:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
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

    def key(self, user_id: str) -> str:
        return f"{self.prefix}:cand:{user_id}"

    def get(self, user_id: str) -> CandidateList | None:
        try:
            raw = self._r.get(self.key(user_id))
        except self._error as exc:
            raise BackendUnavailable(f"candidate cache {self.url}: read failed: {exc}") from exc
        return None if raw is None else decode(bytes(raw))

    def put_many(self, lists: Mapping[str, CandidateList], chunk: int = 500) -> int:
        written = 0
        items: Sequence[tuple[str, CandidateList]] = list(lists.items())
        try:
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
