"""The registry and rollout, proved small on the simulated world, which knows the true lift: a
shuffled-score canary is rolled back within 10 simulated minutes and before 5 % of the day's
requests; a better one is promoted; the A/B interval covers the true lift; the demo function
runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from feedstack.core.spec import Spec, render_spec
from feedstack.registry.benchmarks import SimWorld, abtest_experiment
from feedstack.registry.rollout import RolloutPolicy
from feedstack.registry.rollout_demo import run_rollout_demo
from feedstack.registry.runner import RolloutRunner, read_decisions
from feedstack.registry.simulation import simulate_abtest, simulate_rollout
from feedstack.registry.traffic import BETTER, CHAMPION, SHUFFLED, Traffic
from tests.contract.test_registry_mlflow import fresh_sqlite_registry, model_folder

WORLD = SimWorld(users=20_000, articles=600)
# Short steps so the promotion path runs in a few simulated hours.
FAST = Spec.model_validate({"registry": {"step_min_minutes": 5, "step_min_requests": 300}})


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    return WORLD.traffic()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shuffled_canary_is_rolled_back_fast(traffic: Traffic, tmp_path: Path, seed: int) -> None:
    runner = RolloutRunner(tmp_path, RolloutPolicy.from_spec(Spec()))
    res = simulate_rollout(
        traffic, runner, CHAMPION, SHUFFLED,
        champion_version="a", challenger_version="bad", canary_share=0.10,
        max_minutes=60, seed=seed,
    )  # fmt: skip
    assert res["outcome"] == "rolled_back"
    assert res["minutes"] <= 10
    assert res["canary_share_of_day_requests"] < 0.05
    last = read_decisions(tmp_path)[-1]
    assert last["action"] == "rollback" and "CTR lower" in last["reasons"][0]
    assert last["numbers"]["ctr_lift"] < 0  # the numbers that drove it are logged


def test_better_canary_is_promoted(traffic: Traffic, tmp_path: Path) -> None:
    runner = RolloutRunner(tmp_path, RolloutPolicy.from_spec(FAST))
    res = simulate_rollout(
        traffic, runner, CHAMPION, BETTER,
        champion_version="a", challenger_version="good", canary_share=0.10,
        max_minutes=300, seed=0, truth_per_minute=300,
    )  # fmt: skip
    assert res["outcome"] == "promoted"
    # The lift measured over the ramp-up (step by step) covers the world's true lift.
    assert res["covers_true_lift"], (res["measured_ctr_lift"], res["true_ctr_lift"])
    assert [d["action"] for d in res["decisions"]] == ["step_up", "step_up", "promote"]
    assert res["measured_ctr_lift"]["estimate"] > 0.05
    state = (tmp_path / "registry" / "rollout.json").read_text()
    assert '"champion": "good"' in state


def test_ab_interval_covers_the_true_lift(traffic: Traffic) -> None:
    truth = traffic.true_lift(CHAMPION, BETTER, 60, 1_000, seed=99)
    assert 0.05 < truth < 0.3
    for seed in (0, 1, 2):
        res = simulate_abtest(
            traffic, abtest_experiment(seed), {"control": CHAMPION, "b": BETTER}, Spec(),
            minutes=60, seed=seed,
        )  # fmt: skip
        lift = res["arms"]["b"]["lift"]
        assert lift["low"] <= truth <= lift["high"], (seed, lift, truth)
        assert not res["srm"]["mismatch"]


def test_rollout_demo(project: Path) -> None:
    fresh_sqlite_registry(project)
    (project / "feedstack.yaml").write_text(render_spec(FAST), encoding="utf-8")
    model_folder(project, "news-20260101T000000Z-aaaa")
    model_folder(project, "news-20260102T000000Z-bbbb")
    trained = {"version": "news-20260102T000000Z-bbbb", "windows": {
        "start": 1767225600.0, "label": 1767247200.0, "eval": 1767268800.0, "end": 1767290400.0,
    }}  # fmt: skip
    out = run_rollout_demo(project, trained=trained, world=WORLD, ab_minutes=30)
    reg = out["registry"]
    assert [v["number"] for v in reg["registered"]] == ["1", "2"]
    assert reg["champion"] == "news-20260102T000000Z-bbbb"
    assert reg["lineage"]["data"]["event_range"]["fit_start"] == "2026-01-01T00:00:00+00:00"
    assert out["bad_canary"]["outcome"] == "rolled_back" and out["bad_canary"]["minutes"] <= 10
    assert out["better_canary"]["outcome"] == "promoted"
    assert out["abtest"]["lift"]["estimate"] > 0
    assert Path(out["abtest"]["exposures_file"]).stat().st_size > 0
    assert not (project / "registry" / "rollout.json").exists()  # serving state untouched


def test_another_world_scaled_to_the_benchmark_rate() -> None:
    from feedstack.registry.benchmarks import sim_world_of
    from feedstack.world.config import WorldConfig

    sim = sim_world_of(WorldConfig(users=2_000, articles=400, days=2, seed=3), 175.0)
    traffic = sim.traffic()
    assert traffic.requests_per_minute == pytest.approx(175.0)
    assert sim.start_hour == 36.0 and sim.to_json()["users"] == 2_000
    assert traffic.draw(50, traffic.start, np.random.default_rng(0)).valid.any(axis=1).all()
