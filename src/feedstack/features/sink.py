"""Where feature rows go: the online store (latest value per entity) and the offline store
(every snapshot row, for point-in-time joins).

Port: ``write_online(rows)`` upserts each entity's latest row (a row never replaces a newer one);
``write_offline(rows)`` appends snapshot rows durably. Both are idempotent for the same rows, so
a worker that crashes and re-sends after its last checkpoint never corrupts a value.
Implementations: ``MemorySink`` here (tests, local runs), the Feast-backed store in feast_store.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from feedstack.features.rows import FeatureRows


class FeatureSink(Protocol):
    def write_online(self, rows: Sequence[FeatureRows]) -> None: ...

    def write_offline(self, rows: Sequence[FeatureRows]) -> None: ...


class MemorySink:
    """Online: view -> key -> row dict (newest as-of wins). Offline: every row, in order."""

    def __init__(self) -> None:
        self.online: dict[str, dict[str, dict[str, Any]]] = {}
        self.offline: list[tuple[str, dict[str, Any]]] = []

    def write_online(self, rows: Sequence[FeatureRows]) -> None:
        for fr in rows:
            table = self.online.setdefault(fr.view, {})
            for rec in fr.records():
                old = table.get(rec["key"])
                if old is None or old["as_of_s"] <= rec["as_of_s"]:
                    table[rec["key"]] = rec

    def write_offline(self, rows: Sequence[FeatureRows]) -> None:
        for fr in rows:
            self.offline.extend((fr.view, rec) for rec in fr.records())
