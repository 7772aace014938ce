"""Rollout observations from a scrape of the server's metrics (registry/observe.py)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from feedstack.monitor.metrics import ServingMetrics
from feedstack.registry.observe import observed_from_metrics
from feedstack.registry.rollout import observations_from_json


def _exposition() -> str:
    m = ServingMetrics(CollectorRegistry())
    for _ in range(1_000):
        m.arm_requests.labels("champion", "ok").inc()
        m.arm_seconds.labels("champion").observe(0.002)
    for i in range(300):
        m.arm_requests.labels("challenger", "fallback" if i < 100 else "ok").inc()
        m.arm_seconds.labels("challenger").observe(0.2 if i < 5 else 0.002)
    m.impressions.labels("v1", "champion").inc(10_000)
    m.clicks.labels("v1", "champion").inc(800)
    m.impressions.labels("v2", "challenger").inc(3_000)
    m.clicks.labels("v2", "challenger").inc(100)
    m.impressions.labels("fallback", "challenger").inc(500)  # fallback lists count by arm too
    m.requests.labels("feed", "http", "5xx").inc(13)
    return generate_latest(m.registry).decode()


def test_scrape_gives_each_arms_counters() -> None:
    doc = observed_from_metrics(_exposition())
    assert doc["control"] == {
        "requests": 1_000,
        "errors": 10,  # 13 unattributed 5xx split by share of requests (1000 / 1300)
        "fallbacks": 0,
        "latency_p99_ms": 2.5,  # the bucket holding 99 %: le=0.0025
        "impressions": 10_000,
        "clicks": 800,
    }
    canary = doc["canary"]
    assert canary["requests"] == 300 and canary["fallbacks"] == 100 and canary["errors"] == 3
    assert canary["latency_p99_ms"] == 200.0  # 5 of 300 at 0.2 s: 98.3 % within 2.5 ms
    assert canary["impressions"] == 3_500 and canary["clicks"] == 100
    canary_obs, control_obs = observations_from_json(doc, "scrape")
    assert canary_obs.fallback_rate > control_obs.fallback_rate


def test_empty_scrape_is_zero_not_an_error() -> None:
    doc = observed_from_metrics("")
    assert doc["canary"]["requests"] == 0 and doc["control"]["latency_p99_ms"] == 0.0
