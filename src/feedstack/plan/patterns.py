"""Three serving patterns on the same traffic and prices: cost and freshness.

* **batch-offline**: a nightly job ranks every user's feed; serving is a key lookup (the
  transport floor, ``floor_rps_per_core``). Cheap to serve, but nothing is fresher than the
  batch period: new articles and today's clicks wait for the next run.
* **online**: every request retrieves candidates and ranks them; no candidate cache. Freshest,
  but each request pays the candidate generation (``candidate_build_ms_per_user``) too.
* **hybrid** (what feedstack runs): candidates from the batch job (new articles are added by the
  stream), features from the stream, ranking online. Features as fresh as the stream worker.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from feedstack.core.spec import Spec
from feedstack.plan.autoscale import simulate
from feedstack.plan.capacity import BYTES_PER_GB, MAX_FOLLOW_SHARE, Capacity, follow_share
from feedstack.plan.cost import Levers, monthly_lines, total
from feedstack.plan.inputs import PlanInputs
from feedstack.plan.prices import Prices
from feedstack.plan.quantity import Quantity


def compare(spec: Spec, inputs: PlanInputs, prices: Prices, cap: Capacity) -> list[dict[str, Any]]:
    """One row per pattern: monthly cost, ranking freshness and feature freshness (s)."""
    c = spec.cost
    auto = spec.traffic.autoscaling
    ratio = spec.traffic.peak_to_average
    util = c.target_utilization
    period_s = c.batch_period_h * 3600.0
    lag_s = inputs.feature_lag_p99_s.value
    target_s = spec.freshness.feature_max_lag_s
    rows = []

    # hybrid: the plan itself.
    day = simulate(cap.serving_cores_busy.value, ratio, auto, util)
    hybrid = total(monthly_lines(spec, prices, cap, day, Levers()))
    how = f"candidates rebuilt every {c.batch_period_h:g} h; new articles, features: stream"
    ok = cap.state_follow_share.value < MAX_FOLLOW_SHARE
    rows.append(_row("hybrid", hybrid, lag_s, lag_s, target_s, how, ok))

    # online: candidate generation per request on the serving cores; no candidate cache. Every
    # serving process holds the candidate sources and keeps them current from the log (as it
    # keeps the article state): priced like the hybrid's own state, no less completely.
    peak = cap.peak_qps.value
    follow_on = follow_share(inputs, cap.peak_qps, copies=2.0)
    left = max(1.0 - follow_on.value, 1.0 - MAX_FOLLOW_SHARE)
    busy_on = (
        peak / inputs.rps_per_core_at_slo.value
        + peak * inputs.candidate_build_ms_per_user.value / 1000.0
    ) / left
    day_on = simulate(busy_on, ratio, auto, util)
    processes = math.ceil(day_on.peak_cores) + spec.traffic.zones * c.cores_per_replica
    state_gb = Quantity.derived(
        processes * inputs.model_state_bytes.value / BYTES_PER_GB,
        "GB",
        "(peak autoscaled cores + spares: one serving process each) x model_state_bytes / 2^30",
        {"model_state_bytes": inputs.model_state_bytes, "state_follow_share": follow_on},
    )
    cap_on = replace(
        cap,
        replica_state_gb=state_gb,
        redis_candidates_gb=_zero_gb(),
        batch_core_h_per_month=_scaled(
            cap.batch_core_h_per_month,
            cap.train_core_h_per_run.value
            / (cap.train_core_h_per_run.value + cap.candidate_build_core_h_per_run.value),
        ),
    )
    online = total(monthly_lines(spec, prices, cap_on, day_on, Levers()))
    how = (
        "candidates retrieved per request; every serving process holds the candidate sources "
        f"({inputs.model_state_bytes.value / 2**20:.0f} MB) and applies the log to them "
        f"(state_follow_share {follow_on.value:.2f})"
    )
    feasible = follow_on.value < MAX_FOLLOW_SHARE
    rows.append(_row("online", online, lag_s, lag_s, target_s, how, feasible))

    # batch-offline: serving at the lookup floor; the batch job also ranks every user's feed.
    busy_floor = cap.peak_qps.value / inputs.floor_rps_per_core.value
    day_b = simulate(busy_floor, ratio, auto, util)
    dau = spec.traffic.daily_active_users
    rank_h = dau * inputs.rank_ms_per_request.value / 3.6e6
    runs = c.hours_per_month / c.batch_period_h
    feed_bytes = spec.api.k_max * inputs.bytes_per_candidate.value + c.redis_bytes_per_key
    feed_gb = dau * feed_bytes * c.redis_replication / c.redis_max_memory_fraction / BYTES_PER_GB
    cap_b = replace(
        cap,
        redis_candidates_gb=Quantity.assumed(feed_gb, "GB", "k_max ranked items per user"),
        redis_features_gb=_zero_gb(),
        batch_core_h_per_month=Quantity.assumed(
            cap.batch_core_h_per_month.value + rank_h * runs, "core-h/month", "+ ranking"
        ),
    )
    batch = total(monthly_lines(spec, prices, cap_b, day_b, Levers()))
    how = f"feeds ranked every {c.batch_period_h:g} h, served by key lookup"
    rows.append(_row("batch_offline", batch, period_s, period_s, target_s, how))
    return rows


def _row(
    name: str,
    cost: Quantity,
    rank_s: float,
    feature_s: float,
    target_s: float,
    how: str,
    feasible: bool = True,
) -> dict[str, Any]:
    return {
        "pattern": name,
        "monthly_cost_usd": round(cost.value, 2),
        # False: following the log would take more than MAX_FOLLOW_SHARE of every core.
        "feasible": feasible,
        "ranking_freshness_s": round(rank_s, 3),
        "feature_freshness_s": round(feature_s, 3),
        "meets_freshness": feature_s <= target_s,
        "how": how,
    }


def _zero_gb() -> Quantity:
    return Quantity.assumed(0.0, "GB", "not used by this pattern")


def _scaled(q: Quantity, factor: float) -> Quantity:
    return Quantity.derived(q.value * factor, q.unit, "training share only", {"of": q})
