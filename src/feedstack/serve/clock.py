"""The serving clock for a log that is not happening now (a replayed or simulated world).

``serve.clock: log`` serves as of the log's time, not the wall clock's. The naive "now = the
newest event time read" let one event decide the time for everyone: a single click stamped with
today's date in a simulated world moved the clock months ahead, every article became too old to
serve, every feed went empty, and a restart replayed the same event into the same state.

So the clock follows the log's event times *in log order*, and one event moves it at most
``serve.log_clock_max_step_s`` (one hour by default):

    now <- min(max(now, t), now + max_step)        for each event time t, in log order

An event behind the clock does not move it; one far ahead moves it one step. A genuine log
still gets there: a gap of G seconds between real events is crossed in G / max_step events
(a world with thousands of events an hour crosses a quiet night at once). The server also
refuses API events more than one step ahead of this clock (serve/service.py), so the events
that do arrive can move it only as fast as the log really runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from feedstack.core.clock import Clock, SystemClock
from feedstack.features.aggregator import event_seconds
from feedstack.features.item_cache import ItemFeatureCache


class LogClock:
    """Now = the log's time as read by the item cache, stepped (see the module docstring); the
    ``fallback`` clock before any event was read."""

    def __init__(
        self,
        items: ItemFeatureCache | None,
        max_step_s: float = 3600.0,
        fallback: Clock | None = None,
    ) -> None:
        self.max_step_s = max_step_s
        self.fallback = fallback or SystemClock()
        self._now_s: float | None = None
        if items is not None:  # every batch the cache applies passes here first
            items.on_events = self.observe

    def observe(self, events: Sequence[Mapping[str, Any]]) -> None:
        """The events of one batch, in log order (as stored: ISO times)."""
        self.advance([event_seconds(e["event_time"]) for e in events])

    def advance(self, times_s: Sequence[float]) -> None:
        """Follow event times (Unix seconds, log order), at most one step per event. The first
        batch starts the clock at its earliest time, so not even the first event alone sets
        it."""
        if not times_s:
            return
        now = min(times_s) if self._now_s is None else self._now_s
        step = self.max_step_s
        for t in times_s:
            if t > now:
                now = t if t - now <= step else now + step
        self._now_s = now

    @property
    def now_s(self) -> float | None:
        return self._now_s

    def now(self) -> datetime:
        s = self._now_s
        return self.fallback.now() if s is None else datetime.fromtimestamp(s, UTC)
