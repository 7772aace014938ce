"""The serving clock for a log that is not happening now (a replayed or simulated world)."""

from __future__ import annotations

from datetime import UTC, datetime

from feedstack.core.clock import Clock, SystemClock
from feedstack.features.item_cache import ItemFeatureCache


class LogClock:
    """Now = the newest event time the item cache has applied (spec ``serve.clock: log``); the
    ``fallback`` clock before any event was read."""

    def __init__(self, items: ItemFeatureCache, fallback: Clock | None = None) -> None:
        self.items = items
        self.fallback = fallback or SystemClock()

    def now(self) -> datetime:
        w = self.items.watermark_s
        return self.fallback.now() if w is None else datetime.fromtimestamp(w, UTC)
