"""Tally: the summary of a generated world, accumulated batch by batch (never holds events).

It is what ``world.json`` and ``--json`` report: counts per event type, CTR overall and by
position (position bias made visible), and events per user-day, the number that sizes a world:
events ~= users * days * events_per_user_day.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from feedstack.world.batch import CLICK, DWELL, IMPRESSION, KINDS, EventBatch
from feedstack.world.timeline import US_PER_DAY, format_times


class Tally:
    def __init__(self, users: int, k: int, start_us: int) -> None:
        self.counts = np.zeros(len(KINDS), dtype=np.int64)
        self.shown = np.zeros(k, dtype=np.int64)  # impressions that had an item at position p
        self.clicks = np.zeros(k, dtype=np.int64)
        self.dwell_ms_total = 0
        self.first_us: int | None = None
        self.last_us: int | None = None
        self._start_us = start_us
        # Active user-days: users seen in an impression, per day (batches come in time order).
        self._day = 0
        self._seen_today: npt.NDArray[np.bool_] = np.zeros(users, dtype=bool)
        self.active_user_days = 0

    def add(self, batch: EventBatch) -> None:
        if len(batch) == 0:
            return
        self.counts += np.bincount(batch.kind, minlength=len(KINDS))
        self.first_us = int(batch.time_us[0]) if self.first_us is None else self.first_us
        self.last_us = int(batch.time_us[-1])
        imp = batch.kind == IMPRESSION
        self.shown += (batch.items[imp] >= 0).sum(axis=0)
        click = batch.kind == CLICK
        self.clicks += np.bincount(batch.position[click], minlength=self.clicks.shape[0])
        self.dwell_ms_total += int(batch.dwell_ms[batch.kind == DWELL].sum())
        days = (batch.time_us[imp] - self._start_us) // US_PER_DAY
        users = batch.user[imp]
        for day in np.unique(days).tolist():
            if day != self._day:
                self.active_user_days += int(self._seen_today.sum())
                self._seen_today[:] = False
                self._day = day
            self._seen_today[users[days == day]] = True

    def summary(self, users: int, days: float) -> dict[str, Any]:
        counts = {name: int(n) for name, n in zip(KINDS, self.counts.tolist(), strict=True)}
        events = int(self.counts.sum())
        impressions, clicks = counts["impression"], counts["click"]
        active = self.active_user_days + int(self._seen_today.sum())
        shown = int(self.shown.sum())
        return {
            "events": events,
            "counts": counts,
            "ctr": _ratio(clicks, shown),
            "ctr_by_position": [
                _ratio(int(c), int(s)) for c, s in zip(self.clicks, self.shown, strict=True)
            ],
            "clicks_per_impression": _ratio(clicks, impressions),
            "hides_per_impression": _ratio(counts["hide"], impressions),
            "mean_dwell_ms": _ratio(self.dwell_ms_total, counts["dwell"]),
            "active_user_days": active,
            "events_per_user_day": _ratio(events, users * days),
            "events_per_active_user_day": _ratio(events, active),
            "first_event_time": _time(self.first_us),
            "last_event_time": _time(self.last_us),
        }


def _ratio(num: float, den: float) -> float:
    return round(num / den, 6) if den else 0.0


def _time(us: int | None) -> str | None:
    return None if us is None else format_times(np.array([us], dtype=np.int64))[0]
