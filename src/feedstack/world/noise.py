"""Counter-based noise: random numbers that are a pure function of (seed, stream, keys).

The interest drift of user u on day d must be computable for one user without replaying every
other user or day (the ground-truth API answers single requests), so it cannot come from a
sequential generator. A stable hash of the keys (SplitMix64's finalizer, Steele et al. 2014) gives
the same bits on every platform and in any evaluation order.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_MASK64 = (1 << 64) - 1

U64 = npt.NDArray[np.uint64]


def mix64(x: U64) -> U64:
    """SplitMix64 finalizer, elementwise. Arrays wrap around silently (scalars would warn)."""
    x = np.atleast_1d(x).astype(np.uint64, copy=True)
    x += _GOLDEN
    x ^= x >> np.uint64(30)
    x *= _M1
    x ^= x >> np.uint64(27)
    x *= _M2
    x ^= x >> np.uint64(31)
    return x


def stream_key(seed: int, stream: int, day: int) -> int:
    """One 64-bit key for a (seed, stream, day) triple."""
    h = mix64(np.array([seed & _MASK64], dtype=np.uint64))
    h = mix64(h ^ np.uint64(stream & _MASK64))
    h = mix64(h ^ np.uint64(day & _MASK64))
    return int(h[0])


def uniform_matrix(key: int, rows: npt.NDArray[np.int64], cols: int) -> npt.NDArray[np.float64]:
    """Uniforms in [0, 1), shape (len(rows), cols); entry (i, j) depends only on key, rows[i], j."""
    base = mix64(np.asarray(rows, dtype=np.uint64) ^ np.uint64(key))
    grid = base[:, None] + np.arange(cols, dtype=np.uint64)[None, :] * _GOLDEN
    bits = mix64(grid.ravel()).reshape(grid.shape)
    # The top 53 bits make an exactly representable double in [0, 1).
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
