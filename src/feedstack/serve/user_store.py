"""An in-memory online store for the request path (tests, one-process demos): the same rows the
stream worker writes (``MemorySink``), read like Feast's online store. Closing it makes every read
fail like an unreachable server (BackendUnavailable), which is how tests take it down."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from feedstack.core.errors import BackendUnavailable
from feedstack.features.sink import MemorySink


class MemoryUserFeatures:
    def __init__(self, sink: MemorySink | None = None) -> None:
        self.sink = sink if sink is not None else MemorySink()
        self.closed = False

    def get_online(self, view: str, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        if self.closed:
            raise BackendUnavailable("online store (memory): closed")
        table = self.sink.online.get(view, {})
        return [table.get(k) for k in keys]

    def close(self) -> None:
        self.closed = True
