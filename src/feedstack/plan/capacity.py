"""Capacity from traffic: peak QPS, serving cores and replicas, Redis memory, storage, batch hours.

Each function returns a derived Quantity whose source is its formula; the inputs are kept so
the report can cite what was measured and what was assumed. GB here is 2^30 bytes, the unit in
which cache node memory is quoted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from feedstack.core.spec import Spec
from feedstack.plan.inputs import PlanInputs
from feedstack.plan.quantity import Quantity

SECONDS_PER_DAY = 86_400.0
BYTES_PER_GB = 2.0**30


def spec_value(value: float, unit: str, key: str) -> Quantity:
    """A spec setting as an assumed quantity named by its key."""
    return Quantity.assumed(value, unit, f"spec {key}")


@dataclass(frozen=True)
class Capacity:
    average_qps: Quantity
    peak_qps: Quantity
    state_follow_share: Quantity
    serving_cores_busy: Quantity
    serving_cores: Quantity
    replicas_per_zone: Quantity
    serving_cores_provisioned: Quantity
    candidate_bytes_per_user: Quantity
    redis_candidates_gb: Quantity
    redis_features_gb: Quantity
    redis_gb: Quantity
    events_per_day: Quantity
    storage_gb: Quantity
    train_core_h_per_run: Quantity
    candidate_build_core_h_per_run: Quantity
    batch_core_h_per_month: Quantity
    stream_cores: Quantity
    # Memory for state every serving process holds beyond the article features (the online
    # pattern's candidate sources); the hybrid holds none.
    replica_state_gb: Quantity

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name).to_json() for f in fields(self)}


def peak_qps(spec: Spec) -> tuple[Quantity, Quantity]:
    """Average and peak feed requests per second.

    average = DAU x requests/user/day / 86,400 s; peak = average x peak-to-average: provision for
    the peak, not the mean (Allspaw, *The Art of Capacity Planning*, O'Reilly 2008, ch. 3).
    """
    t = spec.traffic
    dau = spec_value(t.daily_active_users, "users", "traffic.daily_active_users")
    rpd = spec_value(
        t.requests_per_user_per_day, "requests/user/day", "traffic.requests_per_user_per_day"
    )
    ratio = spec_value(t.peak_to_average, "ratio", "traffic.peak_to_average")
    avg = Quantity.derived(
        dau.value * rpd.value / SECONDS_PER_DAY,
        "requests/s",
        "DAU x requests_per_user_per_day / 86400 s",
        {"daily_active_users": dau, "requests_per_user_per_day": rpd},
    )
    peak = Quantity.derived(
        avg.value * ratio.value,
        "requests/s",
        "average_qps x peak_to_average (Allspaw 2008, ch. 3)",
        {"average_qps": avg, "peak_to_average": ratio},
    )
    return avg, peak


def follow_share(inputs: PlanInputs, peak: Quantity, copies: float = 1.0) -> Quantity:
    """The share of each serving process spent applying the event log to its in-memory state:
    every process applies every event (features/item_cache.py), so this share does not shrink
    with more processes. ``copies``: how many such states a process keeps up to date."""
    epr, rate = inputs.events_per_request, inputs.item_state_events_per_s_per_core
    share = peak.value * epr.value * copies / rate.value
    return Quantity.derived(
        share,
        "fraction",
        f"peak_qps x events_per_request x {copies:g} / item_state_events_per_s_per_core"
        " (every serving process applies every event)",
        {"peak_qps": peak, "events_per_request": epr, "item_state_events_per_s_per_core": rate},
    )


MAX_FOLLOW_SHARE = 0.95  # past it a process does little but follow the log: not a design


def serving(
    spec: Spec, inputs: PlanInputs, peak: Quantity, follow: Quantity | None = None
) -> tuple[Quantity, ...]:
    """Cores busy at peak, cores to provision, replicas per zone (N+1), provisioned cores.

    busy = peak_qps / (requests/s/core at the SLO) / (1 - state_follow_share): what is left of
    a core after it applied the log; cores = ceil(busy / target_utilization);
    replicas = ceil(cores / cores_per_replica) spread over the zones, plus one spare per zone so a
    replica can fail (or be redeployed) in every zone at peak without breaking the SLO (N+1).
    """
    c = spec.cost
    per_core = inputs.rps_per_core_at_slo
    util = spec_value(c.target_utilization, "fraction", "cost.target_utilization")
    per_replica = spec_value(c.cores_per_replica, "cores", "cost.cores_per_replica")
    zones = spec_value(spec.traffic.zones, "zones", "traffic.zones")
    follow = follow or follow_share(inputs, peak)
    left = max(1.0 - follow.value, 1.0 - MAX_FOLLOW_SHARE)
    busy = Quantity.derived(
        peak.value / per_core.value / left,
        "cores",
        "peak_qps / rps_per_core_at_slo / (1 - state_follow_share)",
        {"peak_qps": peak, "rps_per_core_at_slo": per_core, "state_follow_share": follow},
    )
    cores = Quantity.derived(
        math.ceil(busy.value / util.value - 1e-9),
        "cores",
        "ceil(serving_cores_busy / target_utilization)",
        {"serving_cores_busy": busy, "target_utilization": util},
    )
    replicas = math.ceil(cores.value / per_replica.value)
    per_zone = Quantity.derived(
        math.ceil(replicas / zones.value) + 1,
        "replicas",
        "ceil(ceil(serving_cores / cores_per_replica) / zones) + 1 (N+1 per zone)",
        {"serving_cores": cores, "cores_per_replica": per_replica, "zones": zones},
    )
    provisioned = Quantity.derived(
        per_zone.value * zones.value * per_replica.value,
        "cores",
        "replicas_per_zone x zones x cores_per_replica",
        {"replicas_per_zone": per_zone, "zones": zones, "cores_per_replica": per_replica},
    )
    return busy, cores, per_zone, provisioned


def redis(spec: Spec, inputs: PlanInputs) -> tuple[Quantity, Quantity, Quantity, Quantity]:
    """Redis memory for the candidate cache and the online features, with replication.

    bytes/user = candidates_per_user x bytes_per_candidate + per-key overhead;
    GB = keys x bytes/key x replication / max_memory_fraction / 2^30, where the fraction keeps
    ElastiCache's default reserved-memory-percent (25 %) free for snapshots and fragmentation.
    """
    c = spec.cost
    dau = spec_value(spec.traffic.daily_active_users, "users", "traffic.daily_active_users")
    n_cand = spec_value(spec.serve.candidates_per_user, "candidates", "serve.candidates_per_user")
    per_key = spec_value(c.redis_bytes_per_key, "bytes", "cost.redis_bytes_per_key")
    repl = spec_value(c.redis_replication, "copies", "cost.redis_replication")
    frac = spec_value(c.redis_max_memory_fraction, "fraction", "cost.redis_max_memory_fraction")
    per_user = Quantity.derived(
        n_cand.value * inputs.bytes_per_candidate.value + per_key.value,
        "bytes",
        "candidates_per_user x bytes_per_candidate + redis_bytes_per_key",
        {
            "candidates_per_user": n_cand,
            "bytes_per_candidate": inputs.bytes_per_candidate,
            "redis_bytes_per_key": per_key,
        },
    )
    scale = repl.value / frac.value / BYTES_PER_GB
    cand = Quantity.derived(
        dau.value * per_user.value * scale,
        "GB",
        "DAU x candidate_bytes_per_user x redis_replication / redis_max_memory_fraction / 2^30",
        {"daily_active_users": dau, "candidate_bytes_per_user": per_user, "redis_replication": repl,
         "redis_max_memory_fraction": frac},
    )  # fmt: skip
    users_b = dau.value * (inputs.feature_bytes_per_user.value + per_key.value)
    arts_b = inputs.live_articles.value * (inputs.feature_bytes_per_article.value + per_key.value)
    feats = Quantity.derived(
        (users_b + arts_b) * scale,
        "GB",
        "(DAU x (feature_bytes_per_user + key) + live_articles x (feature_bytes_per_article + key))"
        " x redis_replication / redis_max_memory_fraction / 2^30",
        {"daily_active_users": dau, "feature_bytes_per_user": inputs.feature_bytes_per_user,
         "live_articles": inputs.live_articles,
         "feature_bytes_per_article": inputs.feature_bytes_per_article,
         "redis_bytes_per_key": per_key, "redis_replication": repl,
         "redis_max_memory_fraction": frac},
    )  # fmt: skip
    total = Quantity.derived(
        cand.value + feats.value,
        "GB",
        "redis_candidates_gb + redis_features_gb",
        {"redis_candidates_gb": cand, "redis_features_gb": feats},
    )
    return per_user, cand, feats, total


def batch_and_storage(spec: Spec, inputs: PlanInputs, peak: Quantity) -> tuple[Quantity, ...]:
    """Events per day, stored GB, batch core-hours (retrain + candidate rebuild), stream cores.

    events/day = DAU x requests/user/day x events_per_request; stored GB = events/day x
    retention_days x stored_bytes_per_event / 2^30; train core-h per run = events/day x
    train_window_days / 1e6 x train_s_per_million_events / 3600; rebuild core-h per run =
    DAU x candidate_build_ms_per_user / 3.6e6; runs per month = hours_per_month / batch_period_h.
    Stream cores: ingest and feature worker at the peak event rate, below target utilization.
    """
    c = spec.cost
    t = spec.traffic
    dau = spec_value(t.daily_active_users, "users", "traffic.daily_active_users")
    rpd = spec_value(
        t.requests_per_user_per_day, "requests/user/day", "traffic.requests_per_user_per_day"
    )
    epr = inputs.events_per_request
    events = Quantity.derived(
        dau.value * rpd.value * epr.value,
        "events/day",
        "DAU x requests_per_user_per_day x events_per_request",
        {"daily_active_users": dau, "requests_per_user_per_day": rpd, "events_per_request": epr},
    )
    days = spec_value(c.retention_days, "days", "cost.retention_days")
    storage = Quantity.derived(
        events.value * days.value * inputs.stored_bytes_per_event.value / BYTES_PER_GB,
        "GB",
        "events_per_day x retention_days x stored_bytes_per_event / 2^30",
        {"events_per_day": events, "retention_days": days,
         "stored_bytes_per_event": inputs.stored_bytes_per_event},
    )  # fmt: skip
    window = spec_value(c.train_window_days, "days", "cost.train_window_days")
    train = Quantity.derived(
        events.value * window.value / 1e6 * inputs.train_s_per_million_events.value / 3600.0,
        "core-h",
        "events_per_day x train_window_days / 1e6 x train_s_per_million_events / 3600",
        {"events_per_day": events, "train_window_days": window,
         "train_s_per_million_events": inputs.train_s_per_million_events},
    )  # fmt: skip
    build = Quantity.derived(
        dau.value * inputs.candidate_build_ms_per_user.value / 3.6e6,
        "core-h",
        "DAU x candidate_build_ms_per_user / 3.6e6",
        {"daily_active_users": dau,
         "candidate_build_ms_per_user": inputs.candidate_build_ms_per_user},
    )  # fmt: skip
    period = spec_value(c.batch_period_h, "h", "cost.batch_period_h")
    month = spec_value(c.hours_per_month, "h/month", "cost.hours_per_month")
    batch = Quantity.derived(
        (train.value + build.value) * month.value / period.value,
        "core-h/month",
        "(train_core_h_per_run + candidate_build_core_h_per_run) x hours_per_month"
        " / batch_period_h",
        {"train_core_h_per_run": train, "candidate_build_core_h_per_run": build,
         "hours_per_month": month, "batch_period_h": period},
    )  # fmt: skip
    util = spec_value(c.target_utilization, "fraction", "cost.target_utilization")
    peak_events = peak.value * epr.value
    stream = Quantity.derived(
        math.ceil(peak_events / inputs.ingest_events_per_s_per_core.value / util.value)
        + math.ceil(peak_events / inputs.worker_events_per_s_per_core.value / util.value),
        "cores",
        "ceil(peak_qps x events_per_request / ingest_rate / util)"
        " + ceil(peak_qps x events_per_request / worker_rate / util)",
        {"peak_qps": peak, "events_per_request": epr,
         "ingest_events_per_s_per_core": inputs.ingest_events_per_s_per_core,
         "worker_events_per_s_per_core": inputs.worker_events_per_s_per_core,
         "target_utilization": util},
    )  # fmt: skip
    return events, storage, train, build, batch, stream


def capacity(spec: Spec, inputs: PlanInputs) -> Capacity:
    avg, peak = peak_qps(spec)
    follow = follow_share(inputs, peak)
    busy, cores, per_zone, provisioned = serving(spec, inputs, peak, follow)
    per_user, cand, feats, total = redis(spec, inputs)
    events, storage, train, build, batch, stream = batch_and_storage(spec, inputs, peak)
    return Capacity(
        average_qps=avg,
        peak_qps=peak,
        state_follow_share=follow,
        serving_cores_busy=busy,
        serving_cores=cores,
        replicas_per_zone=per_zone,
        serving_cores_provisioned=provisioned,
        candidate_bytes_per_user=per_user,
        redis_candidates_gb=cand,
        redis_features_gb=feats,
        redis_gb=total,
        events_per_day=events,
        storage_gb=storage,
        train_core_h_per_run=train,
        candidate_build_core_h_per_run=build,
        batch_core_h_per_month=batch,
        stream_cores=stream,
        replica_state_gb=Quantity.assumed(0.0, "GB", "no candidate sources in the replicas"),
    )
