"""Scoring latency of a ranker: 500 real candidate rows, one thread, on this machine.

What is timed is the call a server makes per request, ``Ranker.predict(block, num_threads=1)``
on a float32 block of ``rows`` candidates, wall clock (``perf_counter``), after a warm-up, with
the garbage collector off so that a collection of someone else's garbage is not billed to the
model. Blocks are real candidate rows from the evaluation window, cycled. Every ranker is timed
round-robin, one call each per round, so that a burst of load on the machine hits all of them
alike rather than whichever happened to be running.

The machine is shared (2 cores): the result is what this machine did at that time, with the
load average recorded beside it, not a property of the model alone.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

FloatMatrix = npt.NDArray[np.float32]


class Scorer(Protocol):
    """Anything with ``predict(features, num_threads) -> scores`` (a Ranker, a cascade)."""

    def predict(self, features: FloatMatrix, num_threads: int = 1) -> Any: ...


def measure(
    scorers: Mapping[str, Scorer],
    blocks: Sequence[FloatMatrix],
    repeats: int = 300,
    warmup: int = 20,
) -> dict[str, dict[str, float]]:
    """``{name: {"p50_ms", "p99_ms", "mean_ms"}}`` of one predict call per block."""
    names = list(scorers)
    times: dict[str, list[float]] = {n: [] for n in names}
    enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(warmup + repeats):
            block = blocks[r % len(blocks)]
            for name in names:
                started = time.perf_counter()
                scorers[name].predict(block, num_threads=1)
                elapsed = time.perf_counter() - started
                if r >= warmup:
                    times[name].append(elapsed * 1e3)
    finally:
        if enabled:
            gc.enable()
    out = {}
    for name in names:
        t = np.asarray(times[name])
        out[name] = {
            "p50_ms": round(float(np.percentile(t, 50)), 4),
            "p99_ms": round(float(np.percentile(t, 99)), 4),
            "mean_ms": round(float(t.mean()), 4),
        }
    return out


def blocks_of(rows: FloatMatrix, size: int, limit: int = 64) -> list[FloatMatrix]:
    """Up to ``limit`` contiguous blocks of ``size`` rows (the last rows wrap around)."""
    n = rows.shape[0]
    if n == 0:
        return []
    count = max(1, min(limit, n // size))
    out = []
    for b in range(count):
        idx = (np.arange(size) + b * size) % n
        out.append(np.ascontiguousarray(rows[idx], dtype=np.float32))
    return out


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None
