"""The planner: hand-computed known answers on a small spec, invariants, labels, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from feedstack.core.errors import InputError
from feedstack.core.spec import Autoscaling, Spec, parse_spec
from feedstack.plan.autoscale import daily_curve, scale_factor, simulate
from feedstack.plan.capacity import capacity
from feedstack.plan.check import check_serving_cores
from feedstack.plan.cost import monthly_lines
from feedstack.plan.inputs import PlanInputs
from feedstack.plan.planner import plan, with_dau
from feedstack.plan.prices import Prices
from feedstack.plan.quantity import Quantity

GB = 2.0**30


def small_spec(budget: float = 1e9) -> Spec:
    return parse_spec(
        {
            "traffic": {
                "daily_active_users": 86_400,
                "requests_per_user_per_day": 10,
                "peak_to_average": 2.0,
                "zones": 2,
            },
            "serve": {"candidates_per_user": 10},
            "budget": {"compute_usd_per_month": budget},
            "cost": {
                "vcpu_hour_usd": 0.1,
                "spot_vcpu_hour_usd": 0.05,
                "memory_gb_hour_usd": 1.0,
                "storage_gb_month_usd": 1.0,
                "hours_per_month": 720,
                "target_utilization": 0.5,
                "cores_per_replica": 2,
                "redis_replication": 2,
                "redis_max_memory_fraction": 0.5,
                "redis_bytes_per_key": 24,
                "retention_days": 10,
                "train_window_days": 1,
                "batch_period_h": 24,
                "fallback": {
                    "rps_per_core_at_slo": 5,
                    "bytes_per_candidate": 100,
                    "feature_bytes_per_user": 40,
                    "feature_bytes_per_article": 1000,
                    "live_articles": 1000,
                    "events_per_request": 1.5,
                    "stored_bytes_per_event": 100,
                    "train_s_per_million_events": 3600,
                    "candidate_build_ms_per_user": 50,
                    # following the log costs nothing here (its own test below)
                    "item_state_events_per_s_per_core": 1e15,
                    "model_state_bytes": GB / 2,
                },
            },
        }
    )


def test_capacity_known_answers() -> None:
    spec = small_spec()
    cap = capacity(spec, PlanInputs.resolve(spec))
    # 86,400 users x 10 requests / 86,400 s = 10 requests/s; x 2 at peak.
    assert cap.average_qps.value == pytest.approx(10.0)
    assert cap.peak_qps.value == pytest.approx(20.0)
    assert cap.serving_cores_busy.value == pytest.approx(4.0)  # 20 / 5 per core
    assert cap.serving_cores.value == 8  # 4 / 0.5 utilization
    assert cap.replicas_per_zone.value == 3  # 4 replicas over 2 zones, + 1 spare each
    assert cap.serving_cores_provisioned.value == 12
    assert cap.candidate_bytes_per_user.value == 1024  # 10 x 100 + 24
    # 86,400 x 1024 bytes x 2 copies / 0.5 fraction
    assert cap.redis_candidates_gb.value == pytest.approx(86_400 * 1024 * 4 / GB)
    feature_bytes = 86_400 * (40 + 24) + 1000 * (1000 + 24)
    assert cap.redis_features_gb.value == pytest.approx(feature_bytes * 4 / GB)
    assert cap.events_per_day.value == pytest.approx(1_296_000)
    assert cap.storage_gb.value == pytest.approx(1_296_000 * 10 * 100 / GB)
    assert cap.train_core_h_per_run.value == pytest.approx(1.296)  # 1.296 M events x 1 h/M
    assert cap.candidate_build_core_h_per_run.value == pytest.approx(1.2)  # 86,400 x 50 ms
    assert cap.batch_core_h_per_month.value == pytest.approx((1.296 + 1.2) * 30)


def test_cost_lines_known_answers() -> None:
    spec = small_spec()
    cap = capacity(spec, PlanInputs.resolve(spec))
    day = simulate(cap.serving_cores_busy.value, 2.0, Autoscaling(), 0.5)
    lines = monthly_lines(spec, Prices.from_spec(spec.cost), cap, day)
    assert lines["batch"].value == pytest.approx((1.296 + 1.2) * 30 * 0.1)
    assert lines["redis_candidates"].value == pytest.approx(86_400 * 1024 * 4 / GB * 720)
    assert lines["storage"].value == pytest.approx(1_296_000 * 10 * 100 / GB)
    spare = 2 * 2  # one 2-core replica per zone
    core_h = day.core_h_per_day * 30 + spare * 720
    assert lines["serving"].value == pytest.approx(core_h * 0.1)


def test_over_budget_lists_cuts_that_fit() -> None:
    spec = small_spec(budget=1000.0)
    result = plan(spec, PlanInputs.resolve(spec))
    assert result["monthly_cost_usd"] > 1000.0 and not result["within_budget"]
    assert result["bottleneck"] == max(result["cost_lines_usd"], key=result["cost_lines_usd"].get)
    saves = {c["cut"]: c["saves_usd"] for c in result["cuts"]}
    batch = (1.296 + 1.2) * 30
    assert saves["batch_on_spot"] == pytest.approx(batch * (0.1 - 0.05), abs=0.01)
    assert saves["candidate_cache_without_replica"] == pytest.approx(
        86_400 * 1024 * 4 / GB * 720 / 2, abs=0.01
    )
    steps = result["plan_to_fit"]
    assert steps and result["fits_after_cuts"]
    assert steps[-1]["monthly_cost_usd"] <= 1000.0
    assert all(a["monthly_cost_usd"] > 1000.0 for a in steps[:-1])  # stops once it fits
    saved = sum(s["saves_usd"] for s in steps)
    assert result["monthly_cost_usd"] - saved == pytest.approx(steps[-1]["monthly_cost_usd"], 0.01)
    # Out of reach: every cut is applied and the plan says it still does not fit.
    hopeless = plan(small_spec(budget=100.0), PlanInputs.resolve(spec))
    assert len(hopeless["plan_to_fit"]) == len(hopeless["cuts"])
    assert not hopeless["fits_after_cuts"]


def test_within_budget_needs_no_cuts() -> None:
    spec = small_spec()
    result = plan(spec, PlanInputs.resolve(spec))
    assert result["within_budget"] and result["plan_to_fit"] == []


def test_daily_curve_has_the_spec_mean_and_peak() -> None:
    for ratio in (1.0, 1.5, 3.0, 6.0):
        x = daily_curve(ratio)
        assert x.mean() == pytest.approx(1.0)
        assert x.max() == pytest.approx(ratio)
        assert (x > 0).all()
    with pytest.raises(InputError, match="peak_to_average"):
        daily_curve(1000.0)


def test_policy_steps() -> None:
    policy = Autoscaling(per_traffic_surge_pct=10, add_nodes_pct=2)
    got = scale_factor(np.array([0.5, 1.0, 1.1, 1.25, 3.0]), policy)
    assert got.tolist() == pytest.approx([1.0, 1.0, 1.02, 1.04, 1.4])


def test_simulation_invariants() -> None:
    weak = simulate(100.0, 3.0, Autoscaling(per_traffic_surge_pct=10, add_nodes_pct=2), 0.7)
    strong = simulate(100.0, 3.0, Autoscaling(per_traffic_surge_pct=10, add_nodes_pct=10), 0.7)
    for day in (weak, strong):
        assert day.utilization_max <= 0.7 + 1e-9
        assert day.proportional_core_h_per_day <= day.core_h_per_day
        assert day.core_h_per_day <= day.static_peak_core_h_per_day
        assert day.peak_cores >= 100 / 0.7
    # A policy that follows traffic more closely keeps the fleet busier and costs less.
    assert strong.utilization_mean > weak.utilization_mean
    assert strong.core_h_per_day < weak.core_h_per_day


def test_inputs_are_labeled() -> None:
    spec = small_spec()
    inputs = PlanInputs.resolve(spec)
    q = inputs.rps_per_core_at_slo
    assert q.label == "assumed" and q.source == "spec cost.fallback.rps_per_core_at_slo"
    m = Quantity.measured(42.0, "requests/s/core", "serve-x.json", "feedstack bench serve", "t")
    inputs = PlanInputs.resolve(spec, {"rps_per_core_at_slo": m})
    assert inputs.rps_per_core_at_slo is m
    cap = capacity(spec, inputs)
    leaves = cap.serving_cores.leaves()
    assert leaves["rps_per_core_at_slo"].label == "measured"
    assert leaves["target_utilization"].source == "spec cost.target_utilization"
    with pytest.raises(InputError, match="unknown plan inputs"):
        PlanInputs.resolve(spec, {"rps": m})
    with pytest.raises(InputError, match="rps_per_core_at_slo"):
        PlanInputs.resolve(spec, {"rps_per_core_at_slo": Quantity.assumed(0, "x", "y")})


def test_prices_carry_source_and_date() -> None:
    rows = Prices.from_spec(Spec().cost).table()
    assert all(r["label"] == "assumed" for r in rows)
    assert all("2024-06" in str(r["source"]) for r in rows if r["entry"] != "hours_per_month")


def test_traffic_doubling_and_dau_override() -> None:
    # With the log's cost per serving process negligible, cost is linear in traffic.
    spec = parse_spec({"cost": {"fallback": {"item_state_events_per_s_per_core": 1e15}}})
    result = plan(spec, PlanInputs.resolve(spec))
    x2 = result["traffic_x2"]
    assert x2["peak_qps"] == pytest.approx(2 * result["peak_qps"], rel=1e-3)
    assert 1.8 < x2["cost_ratio"] <= 2.05
    # Every process applying every event is not: twice the events take twice the share of
    # every core, so serving grows faster than traffic.
    default = plan(Spec(), PlanInputs.resolve(Spec()))
    assert default["traffic_x2"]["cost_ratio"] > x2["cost_ratio"]
    assert with_dau(spec, 1000).traffic.daily_active_users == 1000
    with pytest.raises(InputError, match="--dau"):
        with_dau(spec, 0)


def test_reference_plan_has_the_issue_keys_and_is_fast() -> None:
    spec = Spec()
    inputs = PlanInputs.resolve(spec)
    t = time.perf_counter()
    result = plan(spec, inputs)
    assert time.perf_counter() - t < 0.5
    for key in ("peak_qps", "serving_cores", "redis_gb", "monthly_cost_usd", "budget_usd",
                "within_budget", "bottleneck"):  # fmt: skip
        assert key in result
    assert result["budget_usd"] == 28_000
    names = [p["pattern"] for p in result["patterns"]]
    assert names == ["hybrid", "online", "batch_offline"]
    batch = result["patterns"][2]
    assert not batch["meets_freshness"]  # a daily batch is a day stale


def test_cores_check() -> None:
    got = check_serving_cores(100.0, 50.0, server_cpu_s=30.0, wall_s=12.0)
    assert got.predicted_cores == pytest.approx(2.0)
    assert got.measured_cores == pytest.approx(2.5)
    assert got.ratio == pytest.approx(0.8) and got.within_tolerance
    assert not check_serving_cores(100.0, 50.0, 60.0, 12.0).within_tolerance
    with pytest.raises(InputError, match="wall_s"):
        check_serving_cores(100.0, 50.0, 1.0, 0.0)


def test_cost_section_validates_and_round_trips() -> None:
    import yaml

    from feedstack.core.errors import ConfigError
    from feedstack.core.spec import render_spec

    with pytest.raises(ConfigError, match=r"cost\.fallback\.bogus"):
        parse_spec({"cost": {"fallback": {"bogus": 1}}})
    with pytest.raises(ConfigError, match=r"cost\.target_utilization"):
        parse_spec({"cost": {"target_utilization": 1.5}})
    spec = Spec()
    assert parse_spec(yaml.safe_load(render_spec(spec))) == spec
    assert spec.cost.prices_as_of.startswith("2024-06")


def test_following_the_log_takes_its_share_of_every_serving_core() -> None:
    """Every serving process applies every event: at 20 requests/s x 1.5 events and 300
    events/s per core, 10 % of each core is spent on the log and 90 % is left for requests."""
    spec = small_spec()
    fb = spec.cost.fallback.model_copy(update={"item_state_events_per_s_per_core": 300.0})
    spec = spec.model_copy(update={"cost": spec.cost.model_copy(update={"fallback": fb})})
    cap = capacity(spec, PlanInputs.resolve(spec))
    assert cap.state_follow_share.value == pytest.approx(0.1)
    assert cap.serving_cores_busy.value == pytest.approx(4.0 / 0.9)
    assert cap.serving_cores.value == 9


def test_every_pattern_is_priced_as_completely_and_the_share_assumed_is_reported() -> None:
    spec = small_spec()
    inputs = PlanInputs.resolve(spec)
    result = plan(spec, inputs)
    online = next(p for p in result["patterns"] if p["pattern"] == "online")
    assert "holds the candidate sources" in online["how"]
    # Nothing measured: every line rests on an assumed input.
    assert result["assumed_cost_share"] == pytest.approx(1.0)
    assert "rps_per_core_at_slo" in result["assumed_inputs"]
    assert result["as_built"]["cuts"] == ["batch_on_spot"]
    assert result["as_built"]["monthly_cost_usd"] < result["monthly_cost_usd"]
    # Measure everything: nothing is assumed any more.
    measured = {
        name: Quantity.measured(q.value, q.unit, "test", "feedstack test", "2026-01-01")
        for name, q in inputs.as_dict().items()
    }
    full = plan(spec, PlanInputs.resolve(spec, measured))
    assert full["assumed_cost_share"] == 0.0 and full["assumed_inputs"] == []
    assert full["monthly_cost_usd"] == pytest.approx(result["monthly_cost_usd"])
