"""Known answers and invariants of the canary and A/B statistics (registry/stats.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from feedstack.core.errors import InputError
from feedstack.registry.stats import (
    RatioMoments,
    msprt,
    ratio_metric_n,
    relative_lift,
    sample_ratio,
    stratified,
    two_proportion_n,
)


def test_moments_add_up_like_concatenation() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.poisson(2, 100).astype(float), rng.integers(5, 11, 100).astype(float)
    whole = RatioMoments.of(x, y)
    parts = RatioMoments.of(x[:30], y[:30]) + RatioMoments.of(x[30:], y[30:])
    for a, b in zip(
        (whole.n, whole.sx, whole.sy, whole.sxx, whole.syy, whole.sxy),
        (parts.n, parts.sx, parts.sy, parts.sxx, parts.syy, parts.sxy),
        strict=True,
    ):
        assert a == pytest.approx(b)
    assert whole.ratio == pytest.approx(x.sum() / y.sum())


def test_delta_variance_with_constant_denominator_is_the_mean_variance() -> None:
    x = np.array([0.0, 1, 2, 3, 4, 5, 6, 7])
    m = RatioMoments.of(x, np.full(8, 10.0))
    assert m.var_ratio == pytest.approx(x.var(ddof=1) / 8 / 100)


def test_delta_variance_matches_the_spread_of_replicates() -> None:
    """Across many independent samples, the ratio's spread matches the delta-method variance."""
    rng = np.random.default_rng(1)
    ratios, variances = [], []
    for _ in range(400):
        y = rng.integers(1, 20, 500).astype(float)
        x = rng.binomial(y.astype(int), rng.beta(2, 10, 500)).astype(float)
        m = RatioMoments.of(x, y)
        ratios.append(m.ratio)
        variances.append(m.var_ratio)
    assert np.var(ratios) == pytest.approx(np.mean(variances), rel=0.2)


def test_from_totals_is_poisson() -> None:
    m = RatioMoments.from_totals(1000, 1500, 10_000)
    # Var(clicks per request) = mean = 1.5; impressions constant (10): Var(R) = 1.5 / (n * 100).
    assert m.var_ratio == pytest.approx(1.5 / 1000 / 100, rel=1e-2)
    assert RatioMoments.from_totals(0, 0, 0).n == 0


def test_relative_lift_and_its_interval() -> None:
    a = RatioMoments.from_totals(10_000, 1000, 10_000)
    b = RatioMoments.from_totals(10_000, 1100, 10_000)
    lift = relative_lift(a, b)
    assert lift.estimate == pytest.approx(0.10)
    assert lift.low < 0.10 < lift.high
    assert (lift.high - lift.estimate) == pytest.approx(1.959964 * lift.se)
    same = relative_lift(a, a)
    assert same.estimate == 0 and same.p_value == pytest.approx(1.0)
    empty = relative_lift(RatioMoments(), b)
    assert math.isnan(empty.estimate)


def test_msprt_rejects_a_large_drop_and_not_equality() -> None:
    a = RatioMoments.from_totals(2_000, 3_000, 20_000)
    assert not msprt(a, a, 0.05, 0.1).rejects
    worse = msprt(a, RatioMoments.from_totals(2_000, 1_500, 20_000), 0.05, 0.1)
    assert worse.rejects and worse.log_ratio == pytest.approx(math.log(0.5))
    assert worse.lift_low < -0.5 < worse.lift_high < 0


def test_msprt_false_alarms_stay_below_alpha_under_continuous_looks() -> None:
    """Under no difference, looking after every batch for 60 batches still rejects in <= alpha
    of the runs (a fixed-n z-test looked at 60 times would reject far more often)."""
    rng = np.random.default_rng(7)
    runs, looks, alpha = 200, 60, 0.05
    rejected = 0
    naive = 0
    for _ in range(runs):
        a = b = RatioMoments()
        hit = hit_naive = False
        for _ in range(looks):
            a = a + RatioMoments.of(rng.poisson(1.5, 20), np.full(20, 10.0))
            b = b + RatioMoments.of(rng.poisson(1.5, 20), np.full(20, 10.0))
            hit = hit or msprt(a, b, alpha, 0.1).rejects
            hit_naive = hit_naive or relative_lift(a, b).p_value < alpha
        rejected += hit
        naive += hit_naive
    assert rejected / runs <= alpha
    assert naive / runs > 2 * alpha


def test_two_proportion_sample_size_known_answer() -> None:
    # 10 % -> 11 %, alpha 0.05 two-sided, power 0.8: 14,751 per arm (Fleiss et al. eq. 4.14).
    assert two_proportion_n(0.10, 0.10, 0.05, 0.80) == 14_751
    assert two_proportion_n(0.10, 0.20, 0.05, 0.80) < 14_751 / 3
    with pytest.raises(InputError, match="lift"):
        two_proportion_n(0.1, 0.0, 0.05, 0.8)


def test_ratio_metric_sample_size_shrinks_with_the_effect() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(5, 30, 2000).astype(float)
    base = RatioMoments.of(rng.binomial(y.astype(int), 0.15).astype(float), y)
    n5, n10 = ratio_metric_n(base, 0.05, 0.05, 0.8), ratio_metric_n(base, 0.10, 0.05, 0.8)
    assert n10 == pytest.approx(n5 / 4, rel=0.01)


def test_sample_ratio_mismatch() -> None:
    assert not sample_ratio([1000, 1010], [0.5, 0.5], 0.001).mismatch
    srm = sample_ratio([1000, 1200], [0.5, 0.5], 0.001)
    assert srm.mismatch and srm.chi2 == pytest.approx(2 * 100**2 / 1100)
    assert not sample_ratio([250, 750], [0.25, 0.75], 0.001).mismatch
    with pytest.raises(InputError, match="shares"):
        sample_ratio([1, 2, 3], [0.5, 0.5], 0.001)


def test_stratified_ratio_removes_ramp_up_confounding() -> None:
    """Simpson's paradox in a ramp-up: CTR doubles from step 1 to step 2 for both arms, and the
    treatment is mostly seen in step 2. Pooled, it looks 50 % better; by step, it is equal."""
    c1, c2 = RatioMoments.from_totals(900, 900, 9_000), RatioMoments.from_totals(100, 200, 1_000)
    t1, t2 = RatioMoments.from_totals(100, 100, 1_000), RatioMoments.from_totals(900, 1_800, 9_000)
    pooled = relative_lift(c1 + c2, t1 + t2)
    assert pooled.estimate == pytest.approx(1900 / 1100 - 1)  # +73 %: the ramp, not the model
    control, treatment = stratified([c1, c2], [t1, t2])
    assert control.ratio == pytest.approx(0.15) and treatment.ratio == pytest.approx(0.15)
    assert relative_lift(control, treatment).estimate == pytest.approx(0.0)
    w = 0.5  # each step holds half of all impressions
    assert control.var_ratio == pytest.approx(w**2 * (c1.var_ratio + c2.var_ratio))
    with pytest.raises(InputError, match="strata"):
        stratified([c1], [t1, t2])
