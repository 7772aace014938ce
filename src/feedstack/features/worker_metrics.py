"""The feature worker's Prometheus metrics: its per-event lag histogram, counters and gauges."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import HistogramMetricFamily, Metric

F64 = np.float64
# Seconds. Sub-second buckets resolve the live path; the long tail shows catch-up after downtime.
LAG_BUCKETS_S = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    900.0, 3600.0, 86_400.0,
)  # fmt: skip


class LagHistogram:
    """A Prometheus histogram observed a batch at a time.

    prometheus_client's ``Histogram.observe`` takes one value (~1.2 us with its lock); the worker
    has thousands per batch, so it counts them into buckets with numpy (``searchsorted`` +
    ``bincount``, ~20 us per 5,000) and exposes the standard ``_bucket``/``_sum``/``_count``
    series through a custom collector.
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = np.asarray(buckets, dtype=F64)
        self._counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # last: above every bound
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe_many(self, values: np.ndarray[Any, np.dtype[np.float64]]) -> None:
        # Bucket i counts values <= bounds[i] ("le"), i.e. the first bound >= value.
        counts = np.bincount(
            np.searchsorted(self.bounds, values, side="left"), minlength=len(self._counts)
        )
        total = float(values.sum())
        with self._lock:
            self._counts += counts
            self._sum += total

    @property
    def count(self) -> int:
        return int(self._counts.sum())

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            cum = np.cumsum(self._counts).tolist()
            total = self._sum
        buckets = [(repr(float(b)), float(c)) for b, c in zip(self.bounds, cum, strict=False)]
        buckets.append(("+Inf", float(cum[-1])))
        yield HistogramMetricFamily(self.name, self.documentation, buckets, total)


class WorkerMetrics:
    """The worker's Prometheus metrics, in ``registry`` (a fresh one unless given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.lag = LagHistogram(
            "feedstack_feature_lag_seconds",
            "Event time to online feature write complete, per event.",
            LAG_BUCKETS_S,
        )
        r.register(self.lag)
        self.events = Counter(
            "feedstack_feature_events", "Events applied by the feature worker.", registry=r
        )
        self.queue_depth = Gauge(
            "feedstack_feature_queue_depth",
            "Events in the log past the worker's position.",
            registry=r,
        )
        self.watermark = Gauge(
            "feedstack_feature_watermark_timestamp_seconds",
            "Newest event time the worker has applied (Unix seconds).",
            registry=r,
        )
        self.checkpoint_seconds = Histogram(
            "feedstack_feature_checkpoint_seconds",
            "Time to write one checkpoint (the worker stalls meanwhile).",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )


# ------------------------------------------------------------------------------ reports


def lag_summary_ms(lags_s: np.ndarray[Any, np.dtype[np.float64]]) -> dict[str, float]:
    """p50/p95/p99/max of lags given in seconds, in milliseconds (exact, not from buckets)."""
    if not len(lags_s):
        return {}
    p50, p95, p99 = np.percentile(lags_s, [50, 95, 99]) * 1000
    return {
        "p50": round(float(p50), 2),
        "p95": round(float(p95), 2),
        "p99": round(float(p99), 2),
        "max": round(float(lags_s.max()) * 1000, 2),
        "n": len(lags_s),
    }
