"""Time in the world: int64 microseconds since the Unix epoch, and its canonical text form.

Integers keep time arithmetic exact (float seconds would round microseconds) and vectorize.
The text form is the one pydantic writes for the event schema ("...T00:00:00Z" for whole seconds,
"...T00:00:00.123456Z" otherwise), so generated lines equal ``event_to_json`` of themselves.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

US_PER_S = 1_000_000
US_PER_H = 3_600 * US_PER_S
US_PER_DAY = 24 * US_PER_H
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(t: datetime) -> int:
    """Exact microseconds since the epoch of an aware datetime."""
    if t.tzinfo is None:
        raise ValueError("the world only uses timezone-aware times")
    return (t - _EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(us))


def format_times(us: npt.NDArray[np.int64]) -> list[str]:
    """Canonical UTC strings, vectorized (the per-event cost of strftime would dominate)."""
    stamps = np.asarray(us, dtype=np.int64).astype("datetime64[us]")
    fine = np.char.add(np.datetime_as_string(stamps, unit="us"), "Z")
    whole = us % US_PER_S == 0
    if whole.any():
        coarse = np.char.add(np.datetime_as_string(stamps[whole], unit="s"), "Z")
        fine = fine.astype(object)
        fine[whole] = coarse
    out: list[str] = fine.tolist()
    return out
