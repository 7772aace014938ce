"""The online feature store port: the latest feature row per entity, written by the stream worker
and read by the request path, opened by URL (spec key ``backends.online_features``).

Contract (every backend, proved by tests/contract/test_online_features.py):
- ``write_online(rows)`` upserts each entity's newest row: a row never replaces a newer one
  (idempotent, so a worker that re-sends after a crash changes nothing);
- ``get_online(view, keys)`` answers per key ``{"key", "as_of_s", <feature>: value, ...}`` as
  written (float32 values as float32 rounds them), or None for a key it has no row for; an
  unknown view is an InputError naming it;
- an unreachable backend raises BackendUnavailable (the server degrades, it never errors);
- ``close()`` releases the connections; closing twice is harmless.

Backends: ``sqlite://PATH`` and ``redis://`` go through Feast (feast_store.py: the store of
record, one reader per thread on SQLite, whose connection threads could only take turns on);
``memory://NAME`` holds the rows in this process (tests, one-process benchmarks; a store that is
closed refuses every read, which is how tests take the online store down). The worker runs in
its own process, so it writes through Feast; ``memory://`` serves what this process wrote.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from feedstack.core.errors import BackendUnavailable, InputError
from feedstack.features.definitions import VIEWS_BY_NAME
from feedstack.features.rows import FeatureRows
from feedstack.features.sink import MemorySink
from feedstack.storage.urls import parse_backend_url

ONLINE_FEATURE_SCHEMES = ("sqlite", "redis", "rediss", "memory")


class OnlineFeatureReader(Protocol):
    """What the request path needs of the online store."""

    def get_online(self, view: str, keys: Sequence[str]) -> list[dict[str, Any] | None]: ...


class OnlineFeatures(OnlineFeatureReader, Protocol):
    """The port: reads, writes and close."""

    def write_online(self, rows: Sequence[FeatureRows]) -> None: ...

    def close(self) -> None: ...


class MemoryOnlineFeatures:
    """Rows held in a ``MemorySink`` (newest as-of wins), read like Feast's online store."""

    def __init__(self, sink: MemorySink | None = None, name: str = "default") -> None:
        self.sink = sink if sink is not None else MemorySink()
        self.url = f"memory://{name}"
        self.closed = False

    def write_online(self, rows: Sequence[FeatureRows]) -> None:
        if self.closed:
            raise BackendUnavailable(f"online store {self.url}: closed")
        self.sink.write_online(rows)

    def get_online(self, view: str, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        if self.closed:
            raise BackendUnavailable(f"online store {self.url}: closed")
        if view not in VIEWS_BY_NAME:
            raise InputError(f"unknown feature view {view!r}; known: {sorted(VIEWS_BY_NAME)}")
        table = self.sink.online.get(view, {})
        return [table.get(k) for k in keys]

    def close(self) -> None:
        self.closed = True


class PerThreadOnlineFeatures:
    """One store per thread, from ``factory``: Feast's SQLite reader holds one connection, which
    threads could only take turns on (behind one lock, user-feature reads under 16 request
    threads waited past their budget and fell back)."""

    def __init__(self, factory: Callable[[], OnlineFeatures]) -> None:
        self.factory = factory
        self._local = threading.local()
        self._all: list[OnlineFeatures] = []
        self._lock = threading.Lock()

    def _store(self) -> OnlineFeatures:
        store: OnlineFeatures | None = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = self.factory()
            with self._lock:
                self._all.append(store)
        return store

    def write_online(self, rows: Sequence[FeatureRows]) -> None:
        self._store().write_online(rows)

    def get_online(self, view: str, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        return self._store().get_online(view, keys)

    def close(self) -> None:
        with self._lock:
            for store in self._all:
                store.close()
            self._all.clear()


_MEMORY: dict[str, MemorySink] = {}
_MEMORY_LOCK = threading.Lock()


def open_online_features(url: str, project: Path, read_timeout_s: float = 0.5) -> OnlineFeatures:
    """The online store named by ``url``. ``memory://NAME`` stores of one name share their rows
    within the process (as two readers of one SQLite file do)."""
    parsed = parse_backend_url(url, "online_features", ONLINE_FEATURE_SCHEMES, project)
    if parsed.scheme == "memory":
        name = url.split("://", 1)[1].split("?", 1)[0] or "default"
        with _MEMORY_LOCK:
            sink = _MEMORY.setdefault(name, MemorySink())
        return MemoryOnlineFeatures(sink, name)
    from feedstack.features.feast_repo import FeastRepo
    from feedstack.features.feast_store import FeastFeatureStore

    repo = FeastRepo.from_spec(project, online_url=url)
    if repo.online_kind == "sqlite":
        return PerThreadOnlineFeatures(
            lambda: FeastFeatureStore(repo, read_timeout_s=read_timeout_s)
        )
    return FeastFeatureStore(repo, read_timeout_s=read_timeout_s)  # redis-py's pool is shared


def drop_memory(name: str) -> None:
    """Forget the rows of ``memory://NAME``."""
    with _MEMORY_LOCK:
        _MEMORY.pop(name, None)
