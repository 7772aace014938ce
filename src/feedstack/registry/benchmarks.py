"""The rollout and A/B benchmarks on the simulated world (``feedstack bench rollout|abtest``).

Targets: a bad canary (shuffled scores) is rolled back before it has served 5 % of the
day's requests and within 10 simulated minutes; the 95 % interval of the A/B lift covers the
world's true lift in at least 19 of 20 seeded repetitions. Note that a perfectly calibrated 95 %
interval meets "19 of 20" only with probability P(Bin(20, 0.05) <= 1) = 0.736, so the benchmark
also reports the coverage over more repetitions when asked (``repetitions``).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from feedstack.core.spec import Spec
from feedstack.registry.experiment import Experiment, equal_arms
from feedstack.registry.rollout import RolloutPolicy
from feedstack.registry.runner import RolloutRunner
from feedstack.registry.simulation import simulate_abtest, simulate_rollout
from feedstack.registry.traffic import BETTER, CHAMPION, SHUFFLED, RankingPolicy, Traffic
from feedstack.world.config import WorldConfig
from feedstack.world.newsworld import NewsWorld

# A slow ranker: every request ~2.3x slower, p99 ~190 ms, above the 130 ms alert.
SLOW = RankingPolicy("slow", noise_sd=0.8, latency_median_ms=95.0)


@dataclass(frozen=True)
class SimWorld:
    """The world the benchmarks run on: sized so a simulated minute has ~175 requests. Give
    ``config`` to run on another world (the demo's); ``scale`` multiplies its request rate."""

    users: int = 50_000
    articles: int = 1_000
    seed: int = 1
    start_hour: float = 12.0  # half a day in: the catalog is full
    scale: float = 1.0
    config: WorldConfig | None = None

    def world_config(self) -> WorldConfig:
        if self.config is not None:
            return self.config
        return WorldConfig(users=self.users, articles=self.articles, seed=self.seed)

    def traffic(self) -> Traffic:
        world = NewsWorld(self.world_config())
        start = world.config.start + timedelta(hours=self.start_hour)
        return Traffic(world, start, scale=self.scale)

    def to_json(self) -> dict[str, Any]:
        c = self.world_config()
        return {
            "users": c.users,
            "articles": c.articles,
            "days": c.days,
            "seed": c.seed,
            "start_hour": self.start_hour,
            "traffic_scale": self.scale,
        }


def sim_world_of(config: WorldConfig, requests_per_minute: float = 175.0) -> SimWorld:
    """Another world (the demo's) with its request rate scaled to ``requests_per_minute`` (the
    benchmark world's rate), starting half a day before its end so its catalog is full."""
    world = NewsWorld(config)
    per_minute = float(world.population.sessions_per_day.sum()) / 1440.0
    start_hour = max(0.0, config.days * 24.0 - 12.0)
    return SimWorld(config=config, scale=requests_per_minute / per_minute, start_hour=start_hour)


def _rollout(
    traffic: Traffic,
    policy: RolloutPolicy,
    challenger: RankingPolicy,
    share: float,
    seed: int,
    max_minutes: int,
    truth_per_minute: int = 0,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fs-rollout-") as tmp:
        runner = RolloutRunner(Path(tmp), policy)
        return simulate_rollout(
            traffic,
            runner,
            CHAMPION,
            challenger,
            champion_version="sim-champion",
            challenger_version=f"sim-{challenger.name}",
            canary_share=share,
            max_minutes=max_minutes,
            seed=seed,
            truth_per_minute=truth_per_minute,
        )


def run_rollout_bench(
    spec: Spec | None = None,
    *,
    world: SimWorld = SimWorld(),
    canary_pct: float = 10.0,
    bad_reps: int = 20,
    good_reps: int = 3,
    max_minutes: int = 600,
) -> dict[str, Any]:
    """Bad canaries (shuffled scores) must roll back fast; better ones must be promoted; a slow
    one must roll back on latency."""
    spec = spec or Spec()
    policy = RolloutPolicy.from_spec(spec)
    traffic = world.traffic()
    started = time.perf_counter()
    share = canary_pct / 100
    bad = [_rollout(traffic, policy, SHUFFLED, share, s, max_minutes) for s in range(bad_reps)]
    good = [
        _rollout(traffic, policy, BETTER, share, s, max_minutes, truth_per_minute=500)
        for s in range(good_reps)
    ]
    slow = _rollout(traffic, policy, SLOW, share, 0, max_minutes)
    bad_rolled = [r for r in bad if r["outcome"] == "rolled_back"]
    worst_minutes = max((r["minutes"] for r in bad_rolled), default=None)
    worst_share = max((r["canary_share_of_day_requests"] for r in bad), default=None)
    return {
        "world": world.to_json(),
        "requests_per_minute": round(traffic.requests_per_minute, 1),
        "requests_per_day": round(traffic.requests_per_day, 1),
        "canary_pct": canary_pct,
        "policy": {
            "steps_pct": list(spec.registry.canary_steps_pct),
            "step_min_minutes": policy.step_min_minutes,
            "step_min_requests": policy.step_min_requests,
            "ctr_alpha": policy.ctr_alpha,
            "ctr_mixture_sd": policy.ctr_mixture_sd,
            "p99_alert_ms": policy.p99_alert_ms,
        },
        "bad_canary": {
            "repetitions": len(bad),
            "rolled_back": len(bad_rolled),
            "max_minutes_to_rollback": worst_minutes,
            "mean_minutes_to_rollback": (
                sum(r["minutes"] for r in bad_rolled) / len(bad_rolled) if bad_rolled else None
            ),
            "max_share_of_day_requests": worst_share,
            "runs": [_brief(r) for r in bad],
        },
        "good_canary": {
            "repetitions": len(good),
            "promoted": sum(r["outcome"] == "promoted" for r in good),
            "interval_covers_true_lift": sum(r["covers_true_lift"] for r in good),
            "runs": [_brief(r) for r in good],
        },
        "slow_canary": _brief(slow),
        "targets": {
            "bad_rolled_back_all": len(bad_rolled) == len(bad),
            "bad_within_10_min": worst_minutes is not None and worst_minutes <= 10,
            "bad_below_5pct_of_day": worst_share is not None and worst_share < 0.05,
            "good_promoted_all": all(r["outcome"] == "promoted" for r in good),
        },
        "seconds": round(time.perf_counter() - started, 2),
    }


def _brief(r: dict[str, Any]) -> dict[str, Any]:
    last = r["decisions"][-1] if r["decisions"] else {}
    return {
        "outcome": r["outcome"],
        "minutes": r["minutes"],
        "canary_requests": r["canary_requests"],
        "share_of_day_requests": round(r["canary_share_of_day_requests"], 6),
        "measured_ctr_lift": {
            k: round(r["measured_ctr_lift"][k], 4) for k in ("estimate", "low", "high")
        },
        "true_ctr_lift": r.get("true_ctr_lift"),
        "reasons": last.get("reasons", []),
    }


def abtest_experiment(seed: int) -> Experiment:
    return Experiment(
        f"ab-{seed}", equal_arms(["sim-champion", "sim-better"]), f"ab:{seed}", "simulated"
    )


def run_abtest_bench(
    spec: Spec | None = None,
    *,
    world: SimWorld = SimWorld(),
    repetitions: int = 20,
    minutes: int = 120,
    truth_per_minute: int = 2_000,
) -> dict[str, Any]:
    """Seeded repetitions of a 50/50 test of the better ranker against the champion: does the
    95 % interval of the CTR lift cover the world's true lift?"""
    spec = spec or Spec()
    traffic = world.traffic()
    started = time.perf_counter()
    truth = traffic.true_lift(CHAMPION, BETTER, minutes, truth_per_minute, seed=10_007)
    truth_check = traffic.true_lift(CHAMPION, BETTER, minutes, truth_per_minute, seed=10_009)
    runs = []
    for seed in range(repetitions):
        exp = abtest_experiment(seed)
        res = simulate_abtest(
            traffic, exp, {"control": CHAMPION, "b": BETTER}, spec, minutes=minutes, seed=seed
        )
        lift = res["arms"]["b"]["lift"]
        runs.append(
            {
                "seed": seed,
                "estimate": round(lift["estimate"], 5),
                "low": round(lift["low"], 5),
                "high": round(lift["high"], 5),
                "covers": bool(lift["low"] <= truth <= lift["high"]),
                "users": res["srm"]["users"],
                "srm_p_value": round(res["srm"]["p_value"], 4),
            }
        )
    covered = sum(r["covers"] for r in runs)
    return {
        "world": world.to_json(),
        "minutes": minutes,
        "requests_per_minute": round(traffic.requests_per_minute, 1),
        "true_lift": truth,
        "true_lift_check": truth_check,  # an independent estimate: the truth's own MC error
        "truth_requests": minutes * truth_per_minute,
        "repetitions": repetitions,
        "covered": covered,
        "coverage": covered / repetitions if repetitions else None,
        "mean_estimate": sum(r["estimate"] for r in runs) / max(len(runs), 1),
        "srm_flags": sum(r["srm_p_value"] < spec.registry.srm_p_value for r in runs),
        "runs": runs,
        "targets": {"covered_19_of_20": repetitions >= 20 and covered >= 19 * repetitions / 20},
        "seconds": round(time.perf_counter() - started, 2),
    }
