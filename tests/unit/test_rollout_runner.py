"""The rollout runner: decisions applied to PROJECT/registry/rollout.json and logged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from feedstack.core.errors import InputError
from feedstack.core.spec import Spec
from feedstack.registry.rollout import ArmObservation, RolloutPolicy
from feedstack.registry.runner import DECISIONS_FILE, RolloutRunner, read_decisions
from feedstack.registry.state import RolloutState, load_rollout, save_rollout
from feedstack.registry.stats import RatioMoments

T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)


def arm(requests: int, ctr: float = 0.15, p99: float = 80.0) -> ArmObservation:
    clicks = requests * 10 * ctr
    return ArmObservation(
        requests, 0, 0, p99, RatioMoments.from_totals(requests, clicks, requests * 10)
    )


def runner(root: Path, seen: list[dict[str, Any]] | None = None) -> RolloutRunner:
    hook = seen.append if seen is not None else None
    return RolloutRunner(root, RolloutPolicy.from_spec(Spec()), on_decision=hook)


def test_deploy_step_up_and_promote(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    r = runner(tmp_path, seen)
    state = r.deploy("news-b", 0.10, T0, champion="news-a")
    assert load_rollout(tmp_path) == state
    assert (state.champion, state.challenger, state.canary_share) == ("news-a", "news-b", 0.10)
    assert state.salt == "canary:news-b"

    assert r.step(arm(500), arm(5_000), T0 + timedelta(minutes=5)).action == "hold"
    assert load_rollout(tmp_path).canary_share == 0.10  # type: ignore[union-attr]
    d = r.step(arm(2_500), arm(25_000), T0 + timedelta(minutes=11))
    assert (d.action, d.share) == ("step_up", 0.25)
    assert load_rollout(tmp_path).canary_share == 0.25  # type: ignore[union-attr]
    # The new step counts its own minutes and requests from the step-up.
    d = r.step(arm(4_000), arm(30_000), T0 + timedelta(minutes=30))
    assert d.action == "hold" and d.numbers["step_canary_requests"] == 1_500
    d = r.step(arm(4_600), arm(31_000), T0 + timedelta(minutes=31))
    assert (d.action, d.share) == ("step_up", 0.5)
    d = r.step(arm(7_000), arm(33_000), T0 + timedelta(minutes=45))
    assert d.action == "promote"
    final = load_rollout(tmp_path)
    assert final is not None and (final.champion, final.challenger) == ("news-b", None)
    assert final.canary_share == 0.0

    log = read_decisions(tmp_path)
    assert [x["action"] for x in log] == [
        "deploy", "hold", "step_up", "hold", "step_up", "promote",
    ]  # fmt: skip
    assert all(x["challenger"] == "news-b" for x in log)
    assert log[-1]["numbers"]["canary"]["requests"] == 7_000
    assert seen == log  # the hook saw every decision


def test_rollback_on_ctr_and_by_hand(tmp_path: Path) -> None:
    r = runner(tmp_path)
    r.deploy("news-bad", 0.10, T0, champion="news-a")
    d = r.step(arm(300, ctr=0.05), arm(3_000), T0 + timedelta(minutes=2))
    assert d.action == "rollback"
    state = load_rollout(tmp_path)
    assert state is not None and (state.champion, state.challenger) == ("news-a", None)
    with pytest.raises(InputError, match="no canary in progress"):
        r.step(arm(1), arm(1), T0)

    r.deploy("news-c", 0.05, T0 + timedelta(hours=1))  # champion carried over
    state = r.rollback(T0 + timedelta(hours=2), "bad vibes")
    assert (state.champion, state.challenger) == ("news-a", None)
    assert read_decisions(tmp_path)[-1]["reasons"] == ["bad vibes"]


def test_deploy_refuses_what_cannot_be_run(tmp_path: Path) -> None:
    r = runner(tmp_path)
    with pytest.raises(InputError, match="champion"):
        r.deploy("news-b", 0.1, T0)
    save_rollout(tmp_path, RolloutState("news-a"))
    with pytest.raises(InputError, match="already the champion"):
        r.deploy("news-a", 0.1, T0)
    with pytest.raises(InputError, match="canary share"):
        r.deploy("news-b", 1.0, T0)
    r.deploy("news-b", 0.1, T0)
    with pytest.raises(InputError, match="in progress"):
        r.deploy("news-c", 0.1, T0)
    r.promote(T0 + timedelta(minutes=1))
    assert load_rollout(tmp_path).champion == "news-b"  # type: ignore[union-attr]


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    r = runner(tmp_path)
    r.deploy("news-b", 0.1, T0, champion="news-a")
    with open(tmp_path / DECISIONS_FILE, "a", encoding="utf-8") as f:
        f.write('{"time": "2026-')
    assert len(read_decisions(tmp_path)) == 1
    r.step(arm(10), arm(100), T0 + timedelta(minutes=1))  # appends on a line of its own
    assert [x["action"] for x in read_decisions(tmp_path)] == ["deploy", "hold"]
    assert r.status()["state"]["challenger"] == "news-b"


def test_counter_only_looks_are_compared_step_by_step(tmp_path: Path) -> None:
    """Cumulative counters (what `rollout step --observed` gets) are cut at the logged step-ups:
    CTR doubles between steps for both arms, so pooled the canary (mostly in the late step)
    would look much better; by step it is equal."""
    r = runner(tmp_path)
    r.deploy("news-b", 0.10, T0, champion="news-a")
    d = r.step(arm(2_000, 0.10), arm(18_000, 0.10), T0 + timedelta(minutes=11))
    assert d.action == "step_up" and d.numbers["ctr_compared"] == "by step"

    def cumulative(first: int, later: int) -> ArmObservation:
        clicks = first * 10 * 0.10 + later * 10 * 0.20
        impressions = (first + later) * 10
        ctr = RatioMoments.from_totals(first + later, clicks, impressions)
        return ArmObservation(first + later, 0, 0, 80.0, ctr)

    d = r.step(cumulative(2_000, 6_000), cumulative(18_000, 6_000), T0 + timedelta(minutes=15))
    assert d.numbers["ctr_compared"] == "by step"
    assert d.numbers["ctr_lift"] == pytest.approx(0.0, abs=1e-9)
    assert d.numbers["canary"]["ctr"] > 1.3 * d.numbers["control"]["ctr"]  # pooled view
    # Counters that went backwards (a server restart) fall back to pooling.
    d = r.step(arm(10, 0.15), arm(100, 0.15), T0 + timedelta(minutes=16))
    assert d.numbers["ctr_compared"] == "pooled"
