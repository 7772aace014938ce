"""The console's series from the process's own metrics: known-answer quantiles, rates and CTR."""

from __future__ import annotations

import numpy as np
import pytest

from feedstack.core.spec import Spec
from feedstack.monitor.metrics import ServingMetrics
from feedstack.serve.console_series import ConsoleSeries, divergence, quantile


def test_quantile_interpolates_inside_the_bucket_like_prometheus() -> None:
    cum = {0.1: 0.0, 0.2: 100.0, float("inf"): 100.0}
    assert quantile(0.5, cum) == pytest.approx(0.15)
    assert quantile(0.99, cum) == pytest.approx(0.199)
    assert quantile(0.5, {0.1: 0.0, float("inf"): 0.0}) is None
    assert quantile(0.5, {0.1: 0.0, float("inf"): 10.0}) == 0.1  # highest finite bound


def test_divergence_is_zero_for_the_same_shares_and_grows_with_a_shift() -> None:
    ref = np.array([10.0, 20.0, 70.0])
    psi0, kl0 = divergence(ref, ref.copy())
    assert psi0 == pytest.approx(0.0, abs=1e-12) and kl0 == pytest.approx(0.0, abs=1e-12)
    psi1, kl1 = divergence(ref, np.array([70.0, 20.0, 10.0]))
    assert psi1 > 0.2 and kl1 > 0.05


def test_series_rates_latency_fallbacks_and_ctr_from_two_samples() -> None:
    m = ServingMetrics()
    now = [100.0]
    s = ConsoleSeries(m, Spec(), lambda: 2.5, clock=lambda: now[0])
    s.sample()
    for _ in range(30):
        m.requests.labels("feed", "http", "2xx").inc()
        m.request_seconds.labels("feed", "http").observe(0.004)
    m.requests.labels("events", "http", "2xx").inc(100)  # not a feed: not counted
    m.fallbacks.labels("cold_user").inc(3)
    m.impressions.labels("v1", "champion").inc(200)
    m.clicks.labels("v1", "champion").inc(10)
    now[0] = 102.0
    s.sample()
    [p] = s.to_json()["points"]
    assert p["rps"] == pytest.approx(15.0)
    assert 3.0 < p["p50_ms"] <= 5.0 and 3.0 < p["p99_ms"] <= 5.0  # the 2.5-5 ms bucket
    assert p["fallbacks"] == {"total": 1.5, "cold_user": 1.5}
    assert p["ctr"] == {"v1/champion": 0.05}
    assert p["freshness_lag_s"] == 2.5
    assert p["drift"]["score_psi"] is None  # fewer scores than the reference needs
