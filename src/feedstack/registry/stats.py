"""The statistics of canaries and A/B tests: pure functions of per-arm sums.

CTR is a ratio metric (clicks / impressions) randomized by user, so its variance comes from the
per-unit sums with the delta method (Deng, Knoblich, Lu, "Applying the Delta Method in Metric
Analytics", KDD 2018, sec. 3): for units i with clicks x_i and impressions y_i,

    Var(sum x / sum y) ~= (s_xx - 2 R s_xy + R^2 s_yy) / (n mean_y^2)

and the relative lift L = R_b / R_a - 1 has

    Var(L) ~= (R_b / R_a)^2 (Var R_a / R_a^2 + Var R_b / R_b^2).

Repeated looks (a canary checked every minute) use the mixture sequential probability ratio test
(mSPRT; Johari, Koomen, Pekelis, Walsh, "Always Valid Inference", Operations Research 70(3), 2022)
on the log CTR ratio, whose false-alarm rate stays <= alpha however often one looks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from feedstack.core.errors import InputError

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class RatioMoments:
    """Sums over n units of x (numerator, e.g. clicks) and y (denominator, e.g. impressions)."""

    n: int = 0
    sx: float = 0.0
    sy: float = 0.0
    sxx: float = 0.0
    syy: float = 0.0
    sxy: float = 0.0

    @classmethod
    def of(cls, x: npt.ArrayLike, y: npt.ArrayLike) -> RatioMoments:
        xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        return cls(
            int(xa.shape[0]),
            float(xa.sum()),
            float(ya.sum()),
            float(xa @ xa),
            float(ya @ ya),
            float(xa @ ya),
        )

    @classmethod
    def from_totals(cls, units: int, clicks: float, impressions: float) -> RatioMoments:
        """Moments from counters alone (what Prometheus exports): clicks per unit taken as
        Poisson (variance = mean, an upper bound for a sum of Bernoulli clicks at fixed
        relevance) and impressions per unit as constant."""
        if units <= 0:
            return cls()
        mx, my = clicks / units, impressions / units
        return cls(units, clicks, impressions, units * (mx + mx * mx), units * my * my, clicks * my)

    def __add__(self, other: RatioMoments) -> RatioMoments:
        return RatioMoments(
            self.n + other.n,
            self.sx + other.sx,
            self.sy + other.sy,
            self.sxx + other.sxx,
            self.syy + other.syy,
            self.sxy + other.sxy,
        )

    @property
    def ratio(self) -> float:
        return self.sx / self.sy if self.sy > 0 else 0.0

    @property
    def var_ratio(self) -> float:
        """Delta-method variance of sum x / sum y (Deng et al. 2018, eq. 3)."""
        if self.n < 2 or self.sy <= 0:
            return math.inf
        n = self.n
        mx, my = self.sx / n, self.sy / n
        vxx = (self.sxx - n * mx * mx) / (n - 1)
        vyy = (self.syy - n * my * my) / (n - 1)
        vxy = (self.sxy - n * mx * my) / (n - 1)
        r = mx / my
        return max(vxx - 2 * r * vxy + r * r * vyy, 0.0) / (n * my * my)


class Ratio(Protocol):
    """A ratio estimate and its variance: what the tests below need of an arm."""

    @property
    def ratio(self) -> float: ...

    @property
    def var_ratio(self) -> float: ...


@dataclass(frozen=True)
class RatioEstimate:
    ratio: float
    var_ratio: float


def stratified(
    control: Sequence[RatioMoments], treatment: Sequence[RatioMoments]
) -> tuple[RatioEstimate, RatioEstimate]:
    """Both arms' ratios over strata (the steps of a ramp-up), weighted alike: stratum s gets
    w_s = its share of all impressions, R = sum_s w_s R_s, Var R = sum_s w_s^2 Var R_s.

    Pooling a ramp-up's phases instead compares a treatment seen mostly late (its share grew)
    with a control seen mostly early: when CTR drifts over the day that is Simpson's paradox
    (Kohavi, Tang, Xu 2020, ch. 21 and 15; Crook et al., "Seven Pitfalls to Avoid when Running
    Controlled Experiments on the Web", KDD 2009). Strata where an arm has no data are dropped."""
    if len(control) != len(treatment):
        raise InputError(f"strata: {len(control)} control vs {len(treatment)} treatment")
    keep = [(a, b) for a, b in zip(control, treatment, strict=True) if a.n >= 2 and b.n >= 2]
    total = sum(a.sy + b.sy for a, b in keep)
    if not keep or total <= 0:
        return RatioEstimate(0.0, math.inf), RatioEstimate(0.0, math.inf)
    out = []
    for arm in (0, 1):
        r = v = 0.0
        for pair in keep:
            w = (pair[0].sy + pair[1].sy) / total
            r += w * pair[arm].ratio
            v += w * w * pair[arm].var_ratio
        out.append(RatioEstimate(r, v))
    return out[0], out[1]


@dataclass(frozen=True)
class Lift:
    """Relative lift of arm b over arm a with a two-sided interval at ``level``."""

    estimate: float
    low: float
    high: float
    se: float
    p_value: float
    level: float

    def to_json(self) -> dict[str, float]:
        return {
            "estimate": self.estimate,
            "low": self.low,
            "high": self.high,
            "se": self.se,
            "p_value": self.p_value,
            "level": self.level,
        }


def relative_lift(a: Ratio, b: Ratio, level: float = 0.95) -> Lift:
    """R_b / R_a - 1 with a delta-method normal interval (Deng et al. 2018, sec. 3.3)."""
    ra, rb = a.ratio, b.ratio
    if ra <= 0 or not math.isfinite(a.var_ratio) or not math.isfinite(b.var_ratio):
        return Lift(math.nan, -math.inf, math.inf, math.inf, 1.0, level)
    q = rb / ra
    se = q * math.sqrt(a.var_ratio / ra**2 + (b.var_ratio / rb**2 if rb > 0 else 0.0))
    z = float(sps.norm.ppf(0.5 + level / 2))
    p = float(2 * sps.norm.sf(abs(q - 1) / se)) if se > 0 else (0.0 if q != 1 else 1.0)
    return Lift(q - 1, q - 1 - z * se, q - 1 + z * se, se, p, level)


@dataclass(frozen=True)
class Sequential:
    """The mSPRT on theta = log(R_b / R_a): mixture likelihood ratio and always-valid interval
    on the relative lift."""

    log_ratio: float
    variance: float
    likelihood_ratio: float
    threshold: float  # 1 / alpha
    lift_low: float
    lift_high: float

    @property
    def rejects(self) -> bool:
        return self.likelihood_ratio >= self.threshold


def msprt(a: Ratio, b: Ratio, alpha: float, mixture_sd: float) -> Sequential:
    """Normal-mixture SPRT (Johari et al. 2022, eq. 11): with theta_hat ~ N(theta, V) and a
    N(0, tau^2) mixture over theta,

        Lambda = sqrt(V / (V + tau^2)) * exp(theta_hat^2 tau^2 / (2 V (V + tau^2))),

    rejecting theta = 0 once Lambda >= 1 / alpha. Inverting it gives the always-valid interval
    theta_hat +- sqrt(V (V + tau^2) / tau^2 * (2 log(1/alpha) + log((V + tau^2) / V)))."""
    ra, rb = a.ratio, b.ratio
    if ra <= 0 or rb <= 0 or not math.isfinite(a.var_ratio) or not math.isfinite(b.var_ratio):
        return Sequential(math.nan, math.inf, 0.0, 1 / alpha, -1.0, math.inf)
    theta = math.log(rb / ra)
    v = a.var_ratio / ra**2 + b.var_ratio / rb**2  # delta method for the log ratio
    t2 = mixture_sd**2
    if v <= 0:
        return Sequential(theta, v, math.inf, 1 / alpha, math.exp(theta) - 1, math.exp(theta) - 1)
    log_lr = 0.5 * math.log(v / (v + t2)) + theta**2 * t2 / (2 * v * (v + t2))
    half = math.sqrt(v * (v + t2) / t2 * (2 * math.log(1 / alpha) + math.log((v + t2) / v)))
    return Sequential(
        theta,
        v,
        math.exp(min(log_lr, 700.0)),
        1 / alpha,
        math.exp(theta - half) - 1,
        math.exp(theta + half) - 1,
    )


def two_proportion_n(p_base: float, relative_lift: float, alpha: float, power: float) -> int:
    """Units per arm to detect p_base -> p_base (1 + lift) with a two-sided two-proportion z test
    (Fleiss, Levin, Paik, Statistical Methods for Rates and Proportions, 3rd ed., 2003, eq. 4.14,
    without continuity correction)."""
    p1, p2 = p_base, p_base * (1 + relative_lift)
    if not (0 < p1 < 1 and 0 < p2 < 1) or p1 == p2:
        raise InputError(f"sample size: need 0 < p < 1 and a non-zero lift, got {p1} -> {p2}")
    za, zb = float(sps.norm.ppf(1 - alpha / 2)), float(sps.norm.ppf(power))
    pbar = (p1 + p2) / 2
    num = za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return math.ceil(num**2 / (p2 - p1) ** 2)


def ratio_metric_n(base: RatioMoments, relative_lift: float, alpha: float, power: float) -> int:
    """Units per arm for a ratio metric from its observed per-unit variance: n = (z_a + z_b)^2 *
    2 sigma^2 / delta^2 (Kohavi, Tang, Xu, Trustworthy Online Controlled Experiments, 2020,
    ch. 17), with sigma^2 = n Var(R) from the delta method."""
    if base.n < 2 or base.ratio <= 0 or relative_lift == 0:
        raise InputError("sample size: need >= 2 units with clicks and a non-zero lift")
    za, zb = float(sps.norm.ppf(1 - alpha / 2)), float(sps.norm.ppf(power))
    sigma2 = base.n * base.var_ratio
    delta = base.ratio * relative_lift
    return math.ceil((za + zb) ** 2 * 2 * sigma2 / delta**2)


@dataclass(frozen=True)
class SampleRatio:
    """Sample-ratio-mismatch check: chi-square of assigned units against the planned shares
    (Fabijan et al., "Diagnosing Sample Ratio Mismatch in Online Controlled Experiments",
    KDD 2019). A p-value below the threshold means the assignment or logging is broken."""

    counts: tuple[int, ...]
    expected: tuple[float, ...]
    chi2: float
    p_value: float
    mismatch: bool


def sample_ratio(counts: Sequence[int], shares: Sequence[float], threshold: float) -> SampleRatio:
    total = sum(counts)
    if len(counts) != len(shares) or len(counts) < 2:
        raise InputError(f"SRM check: {len(counts)} counts for {len(shares)} shares")
    s = np.asarray(shares, dtype=np.float64)
    expected = total * s / s.sum()
    if total == 0:
        return SampleRatio(tuple(counts), tuple(expected.tolist()), 0.0, 1.0, False)
    res = sps.chisquare(np.asarray(counts, dtype=np.float64), expected)
    p = float(res.pvalue)
    observed = tuple(int(c) for c in counts)
    return SampleRatio(observed, tuple(expected.tolist()), float(res.statistic), p, p < threshold)
