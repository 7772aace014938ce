"""What ``make demo`` shows of the registry and rollout: a canary rolled back, a canary promoted,
an A/B test, with the numbers for the report.

    result = run_rollout_demo(project, trained=train_result, world=sim_world_of(world_config))

1. Registers every trained model under PROJECT/models/ in MLflow (spec ``registry``), sets the
   ``champion`` alias on the newest, and returns its lineage (events, features, code).
2. On the simulated world's traffic (registry/traffic.py), deploys a broken ranker (shuffled
   scores) as a 10 % canary: the controller rolls it back; then a better ranker: it climbs the
   steps and is promoted. Their runners write under PROJECT/simulation/ (rollout.json and
   decisions.jsonl with every decision and its numbers), never the serving rollout state.
3. Runs a 50/50 A/B test of the better ranker with exposure logging, and compares its lift
   interval with the world's true lift.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from feedstack.core.spec import Spec, load_spec
from feedstack.registry.benchmarks import SimWorld, abtest_experiment
from feedstack.registry.experiment import ExposureLog
from feedstack.registry.mlflow_registry import MlflowRegistry
from feedstack.registry.rollout import RolloutPolicy
from feedstack.registry.runner import RolloutRunner
from feedstack.registry.simulation import simulate_abtest, simulate_rollout
from feedstack.registry.traffic import BETTER, CHAMPION, SHUFFLED, RankingPolicy, Traffic

SIM_DIR = "simulation"


def register_models(
    project: Path, spec: Spec, trained: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Register PROJECT/models/* (oldest first); the newest becomes champion if none is."""
    folders = sorted(p for p in (project / "models").glob("*") if (p / "model.json").is_file())
    if not folders:
        return {"registered": [], "champion": None}
    reg = MlflowRegistry.from_spec(project, spec)
    windows = trained.get("windows") if trained else None
    versions = []
    for folder in folders:
        mine = trained is not None and trained.get("version") == folder.name
        versions.append(reg.register(folder, windows=windows if mine else None))
    champion = reg.alias("champion") or reg.set_alias("champion", versions[-1].number)
    lineage = reg.lineage("champion")
    return {
        "registered": [v.to_json() for v in versions],
        "champion": champion.model,
        "lineage": {k: lineage[k] for k in ("model", "number", "data", "features_version")}
        | {"code_version": lineage["code_version"], "tracking_uri": lineage["tracking_uri"]},
    }


def _canary(
    folder: Path, traffic: Traffic, spec: Spec, challenger: RankingPolicy, seed: int
) -> dict[str, Any]:
    shutil.rmtree(folder, ignore_errors=True)  # a re-run starts a fresh simulated rollout
    runner = RolloutRunner(folder, RolloutPolicy.from_spec(spec))
    res = simulate_rollout(
        traffic,
        runner,
        CHAMPION,
        challenger,
        champion_version="sim-champion",
        challenger_version=f"sim-{challenger.name}",
        canary_share=0.10,
        max_minutes=600,
        seed=seed,
        truth_per_minute=300,
    )
    res["decisions_file"] = str(folder / "registry" / "decisions.jsonl")
    return res


def run_rollout_demo(
    project: Path,
    *,
    trained: Mapping[str, Any] | None = None,
    world: SimWorld = SimWorld(),
    ab_minutes: int = 120,
    seed: int = 0,
) -> dict[str, Any]:
    started = time.perf_counter()
    spec = load_spec(project)
    out: dict[str, Any] = {"registry": register_models(project, spec, trained)}
    traffic = world.traffic()
    sim = project / SIM_DIR
    bad = _canary(sim / "canary-shuffled", traffic, spec, SHUFFLED, seed)
    good = _canary(sim / "canary-better", traffic, spec, BETTER, seed)
    true_lift = traffic.true_lift(CHAMPION, BETTER, ab_minutes, 1_000, seed=10_007)
    exp = abtest_experiment(seed)
    exposures = ExposureLog(sim / "abtest", exp.name)
    exposures.path.unlink(missing_ok=True)
    ab = simulate_abtest(
        traffic,
        exp,
        {"control": CHAMPION, "b": BETTER},
        spec,
        minutes=ab_minutes,
        seed=seed,
        exposures=exposures,
    )
    lift = ab["arms"]["b"]["lift"]
    out |= {
        "world": world.to_json(),
        "requests_per_minute": round(traffic.requests_per_minute, 1),
        "bad_canary": {
            "outcome": bad["outcome"],
            "minutes": bad["minutes"],
            "canary_requests": bad["canary_requests"],
            "share_of_day_requests": bad["canary_share_of_day_requests"],
            "reasons": bad["decisions"][-1]["reasons"] if bad["decisions"] else [],
            "decisions_file": bad["decisions_file"],
        },
        "better_canary": {
            "outcome": good["outcome"],
            "minutes": good["minutes"],
            "steps": [(d["minute"], d["action"], d["share"]) for d in good["decisions"]],
            "measured_ctr_lift": good["measured_ctr_lift"],
            "true_ctr_lift": good.get("true_ctr_lift"),
            "covers_true_lift": good.get("covers_true_lift"),
            "decisions_file": good["decisions_file"],
        },
        "abtest": {
            "minutes": ab_minutes,
            "users": ab["srm"]["users"],
            "ctr": {arm: row["ctr"] for arm, row in ab["arms"].items()},
            "dwell_s_per_click": {arm: row["dwell_s_per_click"] for arm, row in ab["arms"].items()},
            "lift": lift,
            "true_lift": true_lift,
            "covers_true_lift": bool(lift["low"] <= true_lift <= lift["high"]),
            "sample_size": ab["sample_size"],
            "srm_p_value": ab["srm"]["p_value"],
            "exposures_file": str(exposures.path),
        },
        "seconds": round(time.perf_counter() - started, 2),
    }
    return out
