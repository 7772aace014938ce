"""Serving metrics: memoized label children and batch helpers export exactly what per-call use
exports (same names, same values)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from feedstack.monitor.metrics import SCORE_BUCKETS, ServingMetrics


def _samples(m: ServingMetrics) -> list[str]:
    return _lines(m.registry)


def _lines(registry: CollectorRegistry) -> list[str]:
    return sorted(
        line
        for line in generate_latest(registry).decode().splitlines()
        if line and not line.startswith("#") and "_created" not in line
    )


def test_cached_labels_return_one_child_per_value() -> None:
    m = ServingMetrics()
    assert m.candidates.labels("als") is m.candidates.labels("als")
    assert m.candidates.labels("als") is not m.candidates.labels("popular")
    assert m.requests.labels(endpoint="feed", protocol="http", code="2xx") is not None


def test_batch_helpers_equal_single_calls() -> None:
    sources = ["als", "popular", "als", "covisit", "als"]
    scores = [-1.5, 0.2, 3.0, 0.0, 9.0]
    one, batch = ServingMetrics(), ServingMetrics()
    for s in sources:
        one.candidates.labels(s).inc()
    # The score histogram is observed a list at a time: the same series as prometheus_client's
    # own Histogram observed one value at a time (bucket edges included: 0.0 and 9.0 > 4.0).
    reference = CollectorRegistry()
    ref = Histogram(
        "feedstack_ranker_score", "Ranker scores.", buckets=SCORE_BUCKETS, registry=reference
    )
    for x in scores:
        ref.observe(x)
    batch.count_sources(sources)
    batch.observe_scores(scores)
    no_scores = [x for x in _samples(batch) if "ranker_score" not in x]
    assert [x for x in _samples(one) if "ranker_score" not in x] == no_scores
    # Buckets equal; prometheus_client omits _sum/_count for a custom histogram with negative
    # buckets (a sum of signed values is no count of anything), the score's only difference.
    assert [x for x in _samples(batch) if "ranker_score_bucket" in x] == [
        x for x in _lines(reference) if "_bucket" in x
    ]
    assert 'feedstack_served_items_total{source="als"} 3.0' in _samples(batch)


def test_metrics_off_accepts_every_call() -> None:
    m = ServingMetrics(enabled=False)
    m.count_sources(["als"])
    m.observe_scores([1.0])
    m.observe_stages({"rank": 1.0})
    m.request_seconds.labels("feed", "http").observe(0.1)
    assert _samples(m) == []
