"""A day of traffic against the spec's autoscaling policy: fleet size, utilization, core-hours.

**The curve.** News traffic has a morning and a larger evening peak over a night trough. The
shape is s(h) = 0.15 + 0.7 g(h; 8.5 h) + g(h; 20.5 h), g a Gaussian bump of sd 2.5 h on the
24-hour circle, sampled every 5 minutes; traffic is x(h) = s(h)^gamma / mean(s^gamma), with
gamma found by bisection so that max(x) = ``traffic.peak_to_average`` exactly and mean(x) = 1.
So the spec's daily volume and peak ratio hold, and the shape is the only assumption.

**The policy** (``traffic.autoscaling``): add ``add_nodes_pct`` % nodes for every
``per_traffic_surge_pct`` % of surge above the base traffic (the daily mean); the fleet never
drops below its base. The base fleet is the smallest one for which, at every step, the cores the
traffic needs (busy cores / target utilization) fit in the fleet. A policy that adds fewer nodes
than the traffic grows (2 % per 10 % by default) needs a large base: that is what the
utilization numbers show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feedstack.core.errors import InputError
from feedstack.core.spec import Autoscaling

STEP_H = 5.0 / 60.0
FloatArray = npt.NDArray[np.float64]


def _shape() -> FloatArray:
    hours = np.arange(0.0, 24.0, STEP_H)

    def bump(center_h: float) -> FloatArray:
        d = np.abs(hours - center_h)
        d = np.minimum(d, 24.0 - d)  # distance on the 24 h circle
        out: FloatArray = np.exp(-0.5 * (d / 2.5) ** 2)
        return out

    s: FloatArray = 0.15 + 0.7 * bump(8.5) + bump(20.5)
    return s


def daily_curve(peak_to_average: float) -> FloatArray:
    """Traffic per 5-minute step relative to the daily mean: mean 1, max ``peak_to_average``."""
    s = _shape()
    if peak_to_average <= 1.0:
        return np.ones_like(s)

    def ratio(gamma: float) -> float:
        x = s**gamma
        return float(x.max() / x.mean())

    lo, hi = 0.0, 1.0
    while ratio(hi) < peak_to_average:
        hi *= 2.0
        if hi > 1024:
            raise InputError(
                f"traffic.peak_to_average = {peak_to_average}: too peaked for a daily curve "
                f"sampled every {STEP_H * 60:.0f} min"
            )
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ratio(mid) < peak_to_average else (lo, mid)
    x = s**hi
    out: FloatArray = x / x.mean()
    return out


@dataclass(frozen=True)
class DaySimulation:
    base_cores: float
    peak_cores: float
    mean_cores: float
    utilization_mean: float
    utilization_min: float
    utilization_max: float
    core_h_per_day: float
    static_peak_core_h_per_day: float
    proportional_core_h_per_day: float
    hourly_traffic: list[float]
    hourly_cores: list[float]

    def to_json(self) -> dict[str, object]:
        return {k: _r(v) for k, v in vars(self).items()}


def _r(v: object) -> object:
    if isinstance(v, float):
        return float(f"{v:.4g}")
    if isinstance(v, list):
        return [float(f"{x:.4g}") for x in v]
    return v


def scale_factor(traffic: FloatArray, policy: Autoscaling) -> FloatArray:
    """Fleet size relative to the base at each step: 1 + add% x floor(surge% / per%)."""
    surge_pct = np.maximum(traffic - 1.0, 0.0) * 100.0
    steps = np.floor(surge_pct / policy.per_traffic_surge_pct + 1e-9)
    out: FloatArray = 1.0 + policy.add_nodes_pct / 100.0 * steps
    return out


def simulate(
    busy_cores_at_peak: float,
    peak_to_average: float,
    policy: Autoscaling,
    target_utilization: float,
) -> DaySimulation:
    """Run one day. Utilization is busy cores / fleet cores (so at most ``target_utilization``)."""
    x = daily_curve(peak_to_average)
    busy = busy_cores_at_peak * x / x.max()
    factor = scale_factor(x, policy)
    base = math.ceil(float(np.max(busy / target_utilization / factor)) - 1e-9)
    fleet = np.ceil(base * factor - 1e-9)
    util = busy / fleet
    per_hour = round(1.0 / STEP_H)
    return DaySimulation(
        base_cores=float(base),
        peak_cores=float(fleet.max()),
        mean_cores=float(fleet.mean()),
        utilization_mean=float(busy.sum() / fleet.sum()),
        utilization_min=float(util.min()),
        utilization_max=float(util.max()),
        core_h_per_day=float(fleet.sum() * STEP_H),
        static_peak_core_h_per_day=float(fleet.max() * 24.0),
        proportional_core_h_per_day=float(np.ceil(busy / target_utilization).sum() * STEP_H),
        hourly_traffic=[float(v) for v in x.reshape(24, per_hour).mean(axis=1)],
        hourly_cores=[float(v) for v in fleet.reshape(24, per_hour).mean(axis=1)],
    )
