"""The rollout controller, a pure function: each rule with known inputs."""

from __future__ import annotations

import json

import pytest

from feedstack.core.spec import Spec
from feedstack.registry.rollout import ArmObservation, RolloutPolicy, StepProgress, decide
from feedstack.registry.stats import RatioMoments

POLICY = RolloutPolicy.from_spec(Spec())


def arm(
    requests: int = 5_000,
    clicks: float = 7_500,
    errors: int = 5,
    fallbacks: int = 20,
    p99: float = 80.0,
) -> ArmObservation:
    return ArmObservation(
        requests, errors, fallbacks, p99, RatioMoments.from_totals(requests, clicks, requests * 10)
    )


DONE = StepProgress(0.10, minutes=30, canary_requests=5_000)


def test_policy_from_spec() -> None:
    assert POLICY.steps == (0.01, 0.05, 0.10, 0.25, 0.50, 1.0)
    assert POLICY.p99_alert_ms == 130.0
    assert POLICY.next_share(0.10) == 0.25
    assert POLICY.next_share(0.07) == 0.10  # a hand-picked share joins the ladder
    assert POLICY.next_share(0.5) == 1.0


def test_healthy_canary_steps_up_then_is_promoted() -> None:
    d = decide(POLICY, DONE, arm(), arm())
    assert (d.action, d.share) == ("step_up", 0.25)
    last = decide(POLICY, StepProgress(0.5, 30, 5_000), arm(), arm())
    assert (last.action, last.share) == ("promote", 1.0)
    json.dumps(d.to_json())  # every number is JSON (no inf, no nan)


def test_holds_until_the_step_has_lasted_and_served_enough() -> None:
    early = decide(POLICY, StepProgress(0.10, 3, 5_000), arm(), arm())
    assert early.action == "hold" and early.share == 0.10
    assert any("3.0 of 10 min" in r for r in early.reasons)
    few = decide(POLICY, StepProgress(0.10, 30, 100), arm(), arm())
    assert few.action == "hold" and any("100 of 2000" in r for r in few.reasons)


@pytest.mark.parametrize(
    ("canary", "control", "reason"),
    [
        (arm(p99=180.0), arm(p99=80.0), "latency p99 180.0 ms"),
        (arm(errors=200), arm(errors=5), "error rate 0.0400"),
        (arm(fallbacks=600), arm(fallbacks=20), "fallback rate 0.1200"),
        (arm(clicks=5_000), arm(clicks=7_500), "CTR lower"),
    ],
)
def test_guardrail_breach_rolls_back_at_any_step(
    canary: ArmObservation, control: ArmObservation, reason: str
) -> None:
    d = decide(POLICY, StepProgress(0.01, 0.5, 10), canary, control)
    assert (d.action, d.share) == ("rollback", 0.0)
    assert any(reason in r for r in d.reasons), d.reasons


def test_an_incident_on_both_arms_is_not_the_canarys_fault() -> None:
    both_slow = decide(POLICY, DONE, arm(p99=180.0), arm(p99=200.0))
    assert both_slow.action == "step_up"
    both_failing = decide(POLICY, DONE, arm(errors=200), arm(errors=300))
    assert both_failing.action == "step_up"


def test_rates_wait_for_enough_requests_but_ctr_does_not() -> None:
    tiny = decide(POLICY, StepProgress(0.01, 1, 50), arm(50, 75, errors=10), arm(errors=5))
    assert tiny.action == "hold"
    assert decide(POLICY, DONE, arm(clicks=7_700), arm()).action == "step_up"  # better: fine


def test_numbers_drive_the_decision() -> None:
    d = decide(POLICY, DONE, arm(clicks=5_000), arm())
    n = d.numbers
    assert n["canary"]["ctr"] == pytest.approx(0.1) and n["control"]["ctr"] == pytest.approx(0.15)
    assert n["ctr_lift"] == pytest.approx(-1 / 3)
    low, high = n["ctr_lift_always_valid"]
    assert low < -1 / 3 < high < 0
    assert n["msprt_likelihood_ratio"] >= n["msprt_threshold"] == pytest.approx(20)


def test_ctr_is_compared_step_by_step_when_steps_are_given() -> None:
    """Pooled, a canary seen mostly in a later, higher-CTR step would look better (or worse);
    by step the controller sees no difference and its numbers say so."""

    def moments(requests: int, ctr: float) -> RatioMoments:
        return RatioMoments.from_totals(requests, requests * 10 * ctr, requests * 10)

    canary_steps = (moments(300, 0.10), moments(3_000, 0.20))
    control_steps = (moments(3_000, 0.10), moments(300, 0.20))
    pooled = ArmObservation(3_300, ctr=canary_steps[0] + canary_steps[1])
    canary = ArmObservation(3_300, ctr=pooled.ctr, ctr_by_step=canary_steps)
    control = ArmObservation(
        3_300, ctr=control_steps[0] + control_steps[1], ctr_by_step=control_steps
    )
    d = decide(POLICY, DONE, canary, control)
    assert d.numbers["ctr_lift"] == pytest.approx(0.0, abs=1e-9)
    assert d.numbers["ctr_compared"] == "by step"
    assert d.action == "step_up"
    pooled_control = ArmObservation(3_300, ctr=control.ctr)
    naive = decide(POLICY, DONE, pooled, pooled_control)
    assert naive.numbers["ctr_lift"] > 0.5  # pooled: the ramp's timing, not the model
    assert naive.numbers["ctr_compared"] == "pooled"
