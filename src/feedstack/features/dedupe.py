"""The stream's own dedupe: event ids seen in the last ``capacity`` events of one partition.

A partitioned log without conditional writes (Kafka) can hold an event twice: two appenders that
raced on an id, or a producer retry. Both copies sit close together in the same partition (the
key decides it), so a bounded window of recent ids drops them; re-sent old data is stopped at
append time (kafka_log.py). The window is part of the worker's checkpoint, so a replay after a
crash drops exactly what the first pass dropped.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

DEDUPE_WINDOW = 100_000  # event ids per partition (~10 MB of worker memory)


class RecentIds:
    def __init__(self, capacity: int = DEDUPE_WINDOW, ids: list[str] | None = None) -> None:
        self.capacity = capacity
        self._order: deque[str] = deque(ids or ())
        self._set = set(self._order)

    def fresh(self, event_id: str) -> bool:
        """True the first time ``event_id`` is seen within the window (and remember it)."""
        if event_id in self._set:
            return False
        self._set.add(event_id)
        self._order.append(event_id)
        if len(self._order) > self.capacity:
            self._set.discard(self._order.popleft())
        return True

    def __len__(self) -> int:
        return len(self._order)

    def to_array(self) -> np.ndarray[Any, Any]:
        return np.array(self._order, dtype=str) if self._order else np.zeros(0, dtype="<U1")
