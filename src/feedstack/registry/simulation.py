"""Canaries and A/B tests on simulated traffic (registry/traffic.py), judged against the world's
truth: the proof that the controller rolls a bad ranker back fast and promotes a better one, and
that the A/B lift interval covers the true lift.

``simulate_rollout`` feeds the real runner (registry/runner.py, writing PROJECT/registry/) one
look per simulated minute; ``simulate_abtest`` runs a two-arm experiment with stable assignment
and scores its delta-method interval against ``Traffic.true_lift``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np

from feedstack.core.spec import Spec
from feedstack.registry.experiment import ArmOutcome, Experiment, Exposure, ExposureLog, analyze
from feedstack.registry.rollout import ArmObservation, ctr_estimates
from feedstack.registry.runner import RolloutRunner
from feedstack.registry.stats import RatioMoments, relative_lift
from feedstack.registry.traffic import RankingPolicy, Served, Traffic


@dataclass
class _Arm:
    requests: int = 0
    errors: int = 0
    fallbacks: int = 0
    ctr: RatioMoments = field(default_factory=RatioMoments)
    expected_clicks: float = 0.0
    latencies: list[np.ndarray] = field(default_factory=list)  # this step's, for p99
    ctr_by_step: list[RatioMoments] = field(default_factory=lambda: [RatioMoments()])

    def add(self, s: Served) -> None:
        self.requests += int(s.clicks.shape[0])
        self.errors += int(s.error.sum())
        self.fallbacks += int(s.fallback.sum())
        moments = RatioMoments.of(s.clicks, s.impressions)
        self.ctr = self.ctr + moments
        self.ctr_by_step[-1] = self.ctr_by_step[-1] + moments
        self.expected_clicks += float(s.expected_clicks.sum())
        self.latencies.append(s.latency_ms)

    def observation(self) -> ArmObservation:
        lat = np.concatenate(self.latencies) if self.latencies else np.zeros(0)
        p99 = float(np.percentile(lat, 99)) if lat.shape[0] else 0.0
        return ArmObservation(
            self.requests, self.errors, self.fallbacks, p99, self.ctr, tuple(self.ctr_by_step)
        )

    def next_step(self) -> None:
        self.latencies.clear()  # p99 is judged per step
        self.ctr_by_step.append(RatioMoments())


def simulate_rollout(
    traffic: Traffic,
    runner: RolloutRunner,
    champion: RankingPolicy,
    challenger: RankingPolicy,
    *,
    champion_version: str,
    challenger_version: str,
    canary_share: float,
    max_minutes: int,
    seed: int,
    truth_per_minute: int = 0,
) -> dict[str, Any]:
    """Deploy ``challenger`` as a canary and let the controller run it, one look per simulated
    minute, until it is promoted, rolled back or ``max_minutes`` pass. With ``truth_per_minute``
    the world's true CTR lift over the same minutes is computed from that many requests a minute
    (both policies on the same requests, expected clicks) and set beside the measured one."""
    rng = np.random.default_rng(seed)
    state = runner.deploy(challenger_version, canary_share, traffic.start, champion_version)
    buckets = traffic.buckets(state.salt)
    arms = {"canary": _Arm(), "control": _Arm()}
    share = canary_share
    outcome, minutes, decisions = "running", 0, []
    total_requests = 0
    for now, n in traffic.minutes(max_minutes, rng):
        req = traffic.draw(n, now, rng)
        in_canary = buckets[req.users] < share
        for arm, mask, policy in (
            ("canary", in_canary, challenger),
            ("control", ~in_canary, champion),
        ):
            idx = np.flatnonzero(mask)
            sub = type(req)(req.users[idx], req.at_us[idx], req.relevance[idx], req.valid[idx])
            arms[arm].add(traffic.serve(sub, policy, rng))
        total_requests += n
        minutes += 1
        look = now + timedelta(minutes=1)
        decision = runner.step(arms["canary"].observation(), arms["control"].observation(), look)
        if decision.action != "hold":
            decisions.append({"minute": minutes, **decision.to_json()})
        if decision.action == "step_up":
            share = decision.share
            for a in arms.values():
                a.next_step()
        elif decision.action in ("promote", "rollback"):
            outcome = "promoted" if decision.action == "promote" else "rolled_back"
            break
    canary, control = arms["canary"], arms["control"]
    day = traffic.requests_per_day
    # The lift over the ramp-up, step by step (stats.stratified), as the controller saw it.
    lift = relative_lift(*ctr_estimates(control.observation(), canary.observation()))
    truth: dict[str, Any] = {}
    if truth_per_minute > 0:
        true_lift = traffic.true_lift(champion, challenger, minutes, truth_per_minute, seed + 1)
        truth = {
            "true_ctr_lift": true_lift,
            "covers_true_lift": bool(lift.low <= true_lift <= lift.high),
        }
    return {
        "outcome": outcome,
        "minutes": minutes,
        "canary_requests": canary.requests,
        "control_requests": control.requests,
        "requests_per_day": round(day, 1),
        "canary_share_of_day_requests": canary.requests / day,
        "final_share": share,
        "measured_ctr_lift": lift.to_json(),
        **truth,
        "expected_ctr": {
            "canary": canary.expected_clicks / max(canary.ctr.sy, 1.0),
            "control": control.expected_clicks / max(control.ctr.sy, 1.0),
        },
        "decisions": decisions,
    }


def simulate_abtest(
    traffic: Traffic,
    exp: Experiment,
    policies: Mapping[str, RankingPolicy],
    spec: Spec,
    *,
    minutes: int,
    seed: int,
    exposures: ExposureLog | None = None,
) -> dict[str, Any]:
    """Run ``exp`` (arm name -> the policy it serves) for ``minutes`` simulated minutes and
    analyze it like a real one (registry/experiment.py): users as the unit, the CTR lift of each
    arm over the first with its interval, dwell, sample-size guidance and the SRM check."""
    rng = np.random.default_rng(seed)
    names = [a.name for a in exp.arms]
    edges = np.cumsum([a.share for a in exp.arms])
    # Same slices as assignment.arm_of, for every user at once.
    arm_index = np.minimum(
        np.searchsorted(edges, traffic.buckets(exp.salt), side="right"), len(names) - 1
    )
    users = traffic.user_ids()
    n_users = arm_index.shape[0]
    clicks = np.zeros((len(names), n_users))
    impressions = np.zeros((len(names), n_users))
    dwell = np.zeros(len(names))
    requests = np.zeros(len(names), dtype=np.int64)
    for minute, (now, n) in enumerate(traffic.minutes(minutes, rng)):
        req = traffic.draw(n, now, rng)
        for i, name in enumerate(names):
            idx = np.flatnonzero(arm_index[req.users] == i)
            sub = type(req)(req.users[idx], req.at_us[idx], req.relevance[idx], req.valid[idx])
            s = traffic.serve(sub, policies[name], rng)
            np.add.at(clicks[i], sub.users, s.clicks)
            np.add.at(impressions[i], sub.users, s.impressions)
            dwell[i] += float(s.dwell_ms.sum())
            requests[i] += idx.shape[0]
            if exposures is not None:
                stamp = now.isoformat()
                exposures.log(
                    Exposure(f"{exp.name}-{minute}-{name}-{j}", users[u], name, stamp)
                    for j, u in enumerate(sub.users.tolist())
                )
    outcomes = {}
    for i, name in enumerate(names):
        seen = impressions[i] > 0
        outcomes[name] = ArmOutcome.of(
            clicks[i][seen], impressions[i][seen], int(requests[i]), float(dwell[i])
        )
    return analyze(exp, outcomes, spec)
