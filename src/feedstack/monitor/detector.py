"""The windowed drift detector: live feature values over (simulated or real) time against a fixed
reference, evaluated over the trailing ``monitor.drift_window_minutes``.

Time is whatever the caller says it is (Unix or simulated seconds): values are added with their
time and ``evaluate(now_s)`` looks at the window (now - window, now]. No clock is read, so the
demo runs an hour of simulated traffic in a second and tests need no sleeping.

    detector = DriftDetector({"dwell_ms": ref_dwell, "topic": ref_topics}, spec.drift, spec.monitor)
    detector.add(t_s, {"dwell_ms": dwell, "topic": topics})   # as events arrive
    report = detector.evaluate(t_s)                           # e.g. once a minute
    detector.first_drift_s                                    # feature -> first time it drifted
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from feedstack.core.errors import InputError
from feedstack.core.spec import Drift, Monitor
from feedstack.monitor.drift import (
    DriftReport,
    Kind,
    Reference,
    compare,
    kind_of,
    reference_of,
)

Values = Sequence[Any] | npt.ArrayLike


class DriftDetector:
    def __init__(
        self,
        reference: Mapping[str, Values],
        drift: Drift,
        monitor: Monitor,
        kinds: Mapping[str, Kind] | None = None,
    ) -> None:
        kinds = kinds or {}
        self.drift = drift
        self.monitor = monitor
        self.window_s = monitor.drift_window_minutes * 60.0
        # Bins and sorted reference values are computed once: evaluation only bins the live window.
        self.references: dict[str, Reference] = {
            name: reference_of(v, kinds.get(name) or kind_of(v), monitor.drift_bins)
            for name, v in reference.items()
        }
        self._chunks: deque[tuple[float, dict[str, np.ndarray[Any, Any]]]] = deque()
        self.first_drift_s: dict[str, float] = {}
        self.evaluations = 0

    def add(self, t_s: float, values: Mapping[str, Values]) -> None:
        """Live values observed at ``t_s`` (features absent from ``values`` get none this time)."""
        unknown = set(values) - set(self.references)
        if unknown:
            raise InputError(
                f"live values for unknown features {sorted(unknown)}; "
                f"the reference has {sorted(self.references)}"
            )
        if self._chunks and t_s < self._chunks[-1][0]:
            raise InputError(f"t_s {t_s} is before the last added time {self._chunks[-1][0]}")
        self._chunks.append((t_s, {k: np.asarray(v) for k, v in values.items()}))

    def window(self, now_s: float) -> dict[str, np.ndarray[Any, Any]]:
        """The live values in (now - window, now]; older chunks are dropped for good."""
        while self._chunks and self._chunks[0][0] <= now_s - self.window_s:
            self._chunks.popleft()
        out: dict[str, np.ndarray[Any, Any]] = {}
        for name in self.references:
            parts = [c[name] for t, c in self._chunks if t <= now_s and name in c]
            out[name] = np.concatenate(parts) if parts else np.zeros(0)
        return out

    def evaluate(self, now_s: float) -> DriftReport:
        live = self.window(now_s)
        report = DriftReport(
            tuple(
                compare(name, ref, live[name], self.drift, self.monitor.drift_min_samples)
                for name, ref in self.references.items()
            )
        )
        self.evaluations += 1
        for name in report.drifted:
            self.first_drift_s.setdefault(name, now_s)
        return report
