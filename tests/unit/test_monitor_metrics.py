"""Serving metrics: memoized label children and batch helpers export exactly what per-call use
exports (same names, same values)."""

from __future__ import annotations

from prometheus_client import generate_latest

from feedstack.monitor.metrics import ServingMetrics


def _samples(m: ServingMetrics) -> list[str]:
    return sorted(
        line
        for line in generate_latest(m.registry).decode().splitlines()
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
    for x in scores:
        one.score.observe(x)
    batch.count_sources(sources)
    batch.observe_scores(scores)
    assert _samples(one) == _samples(batch)
    assert 'feedstack_served_items_total{source="als"} 3.0' in _samples(batch)


def test_metrics_off_accepts_every_call() -> None:
    m = ServingMetrics(enabled=False)
    m.count_sources(["als"])
    m.observe_scores([1.0])
    m.observe_stages({"rank": 1.0})
    m.request_seconds.labels("feed", "http").observe(0.1)
    assert _samples(m) == []
