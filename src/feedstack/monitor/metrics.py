"""The serving process's Prometheus metrics: one class, so every name is defined once.

Naming follows Prometheus conventions: base units (seconds), ``_total`` on counters (the client
adds it), no user or item ids in labels (bounded cardinality: endpoint, stage, reason, source,
model version, arm). The stream worker's metrics (event->feature lag, queue depth) live in
features/worker_metrics.py (``WorkerMetrics``) and are named in the same style.

Tests and benchmarks pass their own ``CollectorRegistry`` so runs never share counters;
``enabled=False`` gives the same object with every metric a no-op (the overhead benchmark runs the
same server with metrics off).

Several serving processes (``feedstack serve --workers N``, serve/supervisor.py) use
prometheus_client's multiprocess mode: ``multiprocess_dir`` (the ``PROMETHEUS_MULTIPROC_DIR``
the process was started with) makes every value live in a per-process file there, and
``registry`` a collector over all of those files, so the ``/metrics`` of any worker exposes the
sum over every worker (gauges: the largest value among live workers).
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, cast

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Request latencies: fine below the 120 ms SLO, where the alert thresholds sit.
LATENCY_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.12, 0.13, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5,
)  # fmt: skip
STAGE_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
SCORE_BUCKETS = (-4.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 4.0)
STAGES = ("candidates", "user_features", "item_features", "rank", "filter", "log")


class _Noop:
    """Stands in for a metric child when metrics are off."""

    def labels(self, *args: str, **kwargs: str) -> _Noop:
        return self

    def inc(self, amount: float = 1.0) -> None:
        return None

    def observe(self, value: float) -> None:
        return None

    def set(self, value: float) -> None:
        return None

    def observe_many(self, values: Any) -> None:
        return None


class _CachedLabels:
    """``labels(...)`` memoized per label values, for metrics touched on every request.

    prometheus_client's ``labels`` validates the values and takes the metric's lock on every call
    (~1 us); the request path calls it ~30 times per feed (sources, stages), which was the largest
    part of the metrics' CPU (measured: 20 of 50 us per request). Children are never removed from
    these metrics, so the cache cannot go stale; a race only repeats the lookup, which returns the
    same child.
    """

    def labels(self, *labelvalues: Any, **labelkwargs: Any) -> Any:
        if labelkwargs:
            return super().labels(*labelvalues, **labelkwargs)  # type: ignore[misc]
        cache: dict[tuple[Any, ...], Any] = self.__dict__.setdefault("_children_by_values", {})
        child = cache.get(labelvalues)
        if child is None:
            child = cache[labelvalues] = super().labels(*labelvalues)  # type: ignore[misc]
        return child


class _Counter(_CachedLabels, Counter):
    pass


class _Histogram(_CachedLabels, Histogram):
    pass


class BatchHistogram(Histogram):
    """A Histogram also observed a list at a time: ``observe_many`` counts the values into
    buckets with numpy (``searchsorted`` + ``bincount``) and adds each non-empty bucket once,
    so a feed's k scores cost a few locked increments, not k ``observe`` calls. The values are
    prometheus_client's own (``_buckets``, ``_sum``), so the exposition is the standard one in
    single- and multi-process mode alike (a test pins it equal to per-value ``observe``)."""

    def observe_many(self, values: np.ndarray[Any, np.dtype[np.float64]]) -> None:
        if not values.size:
            return
        bounds = np.asarray(self._upper_bounds, dtype=np.float64)
        # Bucket i holds values <= bounds[i] ("le"): the first bound >= value.
        counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=bounds.size)
        self._sum.inc(float(values.sum()))
        for i in np.flatnonzero(counts).tolist():
            self._buckets[i].inc(float(counts[i]))


class ServingMetrics:
    """Every metric the server exports, registered in ``registry``."""

    request_seconds: Histogram
    stage_seconds: Histogram
    score: BatchHistogram
    requests: Counter
    fallbacks: Counter
    errors: Counter
    cache: Counter
    candidates: Counter
    impressions: Counter
    clicks: Counter
    ingest: Counter
    model_info: Gauge
    arm_requests: Counter
    arm_seconds: Histogram

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        enabled: bool = True,
        multiprocess_dir: str | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.enabled = enabled
        self.multiprocess = bool(multiprocess_dir) and enabled
        r: CollectorRegistry | None = self.registry
        if self.multiprocess:
            from prometheus_client import multiprocess, values

            if not getattr(values.ValueClass, "_multiprocess", False):
                raise RuntimeError(
                    "multiprocess metrics need PROMETHEUS_MULTIPROC_DIR set before "
                    "prometheus_client is imported (serve/supervisor.py sets it for its workers)"
                )
            if os.environ.get("PROMETHEUS_MULTIPROC_DIR") != multiprocess_dir:
                raise RuntimeError(f"PROMETHEUS_MULTIPROC_DIR is not {multiprocess_dir!r}")
            # Values go to this process's files; the registry scrapes every worker's files.
            multiprocess.MultiProcessCollector(self.registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
            r = None
        if not enabled:
            noop = _Noop()
            for name in ("request_seconds", "stage_seconds"):
                setattr(self, name, cast(Histogram, noop))
            self.score = cast(BatchHistogram, noop)
            for name in ("requests", "fallbacks", "errors", "cache", "candidates"):
                setattr(self, name, cast(Counter, noop))
            for name in ("impressions", "clicks", "ingest", "arm_requests"):
                setattr(self, name, cast(Counter, noop))
            self.arm_seconds = cast(Histogram, noop)
            self.model_info = cast(Gauge, noop)
            return
        self.request_seconds = _Histogram(
            "feedstack_request_duration_seconds",
            "Request latency by endpoint and protocol.",
            ["endpoint", "protocol"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.stage_seconds = _Histogram(
            "feedstack_stage_duration_seconds",
            "Time spent in one stage of the feed request path.",
            ["stage"],
            buckets=STAGE_BUCKETS_S,
            registry=r,
        )
        self.requests = _Counter(
            "feedstack_requests",
            "Requests by endpoint, protocol and status code class (2xx, 4xx, 5xx).",
            ["endpoint", "protocol", "code"],
            registry=r,
        )
        self.fallbacks = _Counter(
            "feedstack_fallbacks",
            "Feed requests answered by a fallback, by reason.",
            ["reason"],
            registry=r,
        )
        self.errors = _Counter(
            "feedstack_errors",
            "Errors by endpoint and kind (the error class, never a message).",
            ["endpoint", "kind"],
            registry=r,
        )
        self.cache = _Counter(
            "feedstack_candidate_cache_lookups",
            "Candidate-cache lookups by result (hit, miss, error).",
            ["result"],
            registry=r,
        )
        self.candidates = _Counter(
            "feedstack_served_items",
            "Items served, by the candidate source that proposed them.",
            ["source"],
            registry=r,
        )
        # Observed a list at a time (numpy bincount): k observe() calls per feed were the
        # largest single part of the metrics' CPU per request.
        self.score = BatchHistogram(
            "feedstack_ranker_score",
            "Ranker scores of served items (the score-drift monitor reads this).",
            buckets=SCORE_BUCKETS,
            registry=r,
        )
        self.impressions = _Counter(
            "feedstack_impressions",
            "Items shown, by model version and arm.",
            ["model_version", "arm"],
            registry=r,
        )
        self.clicks = _Counter(
            "feedstack_clicks",
            "Clicks received, by model version and arm.",
            ["model_version", "arm"],
            registry=r,
        )
        self.ingest = _Counter(
            "feedstack_ingest_events",
            "Events received by the API, by result (accepted, duplicate, rejected).",
            ["result"],
            registry=r,
        )
        # Per arm (champion = control, challenger = canary): what the rollout controller
        # compares (registry/observe.py reads them from a scrape).
        self.arm_requests = _Counter(
            "feedstack_arm_requests",
            "Feed requests by arm and outcome (ok, fallback).",
            ["arm", "outcome"],
            registry=r,
        )
        self.arm_seconds = _Histogram(
            "feedstack_arm_request_duration_seconds",
            "Feed request-path latency by arm (canary vs control).",
            ["arm"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.model_info = Gauge(
            "feedstack_model_info",
            "1 for each model version loaded, by arm.",
            ["model_version", "arm"],
            registry=r,
            multiprocess_mode="livemax",
        )

    def observe_stages(self, stage_ms: Mapping[str, float]) -> None:
        for stage, ms in stage_ms.items():
            self.stage_seconds.labels(stage).observe(ms / 1000.0)

    def count_sources(self, sources: Iterable[str]) -> None:
        """``candidates.labels(s).inc()`` for each served item's source, one inc per source
        (a feed of 20 items from 4 sources: 4 locked increments instead of 20)."""
        for source, n in collections.Counter(sources).items():
            self.candidates.labels(source).inc(n)

    def observe_scores(self, scores: Iterable[float]) -> None:
        values = np.fromiter(scores, dtype=np.float64)
        if values.size:
            self.score.observe_many(values)


class DriftMetrics:
    """The drift monitor's gauges, one series per feature (a bounded set: the feature names).

    ``publish`` sets them from a drift report; the generated alert rule (monitor/rules.py)
    re-derives the verdict from them with the spec's thresholds.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.kl = Gauge(
            "feedstack_drift_kl_divergence",
            "KL(live || reference) over reference bins, nats.",
            ["feature"],
            registry=r,
        )
        self.psi = Gauge(
            "feedstack_drift_psi", "Population stability index.", ["feature"], registry=r
        )
        self.ks_p = Gauge(
            "feedstack_drift_ks_p_value",
            "Two-sample KS p-value (numeric features only).",
            ["feature"],
            registry=r,
        )
        self.live = Gauge(
            "feedstack_drift_live_samples",
            "Values in the live window.",
            ["feature"],
            registry=r,
        )

    def publish(self, features: Iterable[_FeatureStats]) -> None:
        for f in features:
            self.live.labels(f.feature).set(f.n_live)
            if f.kl is not None:
                self.kl.labels(f.feature).set(f.kl)
            if f.psi is not None:
                self.psi.labels(f.feature).set(f.psi)
            if f.ks_p_value is not None:
                self.ks_p.labels(f.feature).set(f.ks_p_value)


class _FeatureStats(Protocol):
    """What ``DriftMetrics.publish`` reads of a feature's drift (monitor/drift.py FeatureDrift)."""

    @property
    def feature(self) -> str: ...
    @property
    def n_live(self) -> int: ...
    @property
    def kl(self) -> float | None: ...
    @property
    def psi(self) -> float | None: ...
    @property
    def ks_p_value(self) -> float | None: ...
