"""EventBatch: a chunk of world events as columns (numpy), before they become JSON or Arrow.

Building a pydantic model per event would cost more than the whole simulation, so the world keeps
events as integer columns (user, article and request as row numbers; -1 = not applicable) and the
encoders turn them into the event schema's wire forms. Event ids are assigned at encoding time,
from the position in the output file, so they are unique and follow the time order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

KINDS = ("article_published", "user_profile", "impression", "click", "dwell", "hide")
ARTICLE, PROFILE, IMPRESSION, CLICK, DWELL, HIDE = range(len(KINDS))

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class EventBatch:
    time_us: I64
    kind: npt.NDArray[np.int8]
    user: I64
    article: I64
    request: I64
    position: I64
    dwell_ms: I64
    items: npt.NDArray[np.int32]  # (n, k): the shown list of an impression, -1 padded

    @classmethod
    def of(
        cls,
        kind: int,
        time_us: I64,
        *,
        k: int,
        user: I64 | None = None,
        article: I64 | None = None,
        request: I64 | None = None,
        position: I64 | None = None,
        dwell_ms: I64 | None = None,
        items: npt.NDArray[np.int64] | None = None,
    ) -> EventBatch:
        """A batch of one kind; omitted columns are -1."""
        n = time_us.shape[0]

        def col(values: I64 | None) -> I64:
            if values is None:
                return np.full(n, -1, dtype=np.int64)
            return np.asarray(values, dtype=np.int64)

        return cls(
            np.asarray(time_us, dtype=np.int64),
            np.full(n, kind, dtype=np.int8),
            col(user),
            col(article),
            col(request),
            col(position),
            col(dwell_ms),
            np.full((n, k), -1, dtype=np.int32) if items is None else items.astype(np.int32),
        )

    @classmethod
    def concat(cls, batches: list[EventBatch]) -> EventBatch:
        return cls(*(np.concatenate([getattr(b, f.name) for b in batches]) for f in fields(cls)))

    def __len__(self) -> int:
        return int(self.time_us.shape[0])

    def take(self, rows: I64) -> EventBatch:
        return EventBatch(*(getattr(self, f.name)[rows] for f in fields(self)))

    def pieces(self, rows: int) -> Iterator[EventBatch]:
        """Consecutive slices of at most ``rows`` rows (encoders work on bounded pieces)."""
        for lo in range(0, len(self), rows):
            yield EventBatch(*(getattr(self, f.name)[lo : lo + rows] for f in fields(self)))

    def split_sorted(self, before_us: int) -> tuple[EventBatch, EventBatch]:
        """Rows before ``before_us`` in time order (ties keep batch order), and the rest."""
        order = np.argsort(self.time_us, kind="stable")
        cut = int(np.searchsorted(self.time_us[order], before_us, side="left"))
        return self.take(order[:cut]), self.take(order[cut:])
