"""A/B experiments: records, stable assignment, exposure log, the join to events, the analysis."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from feedstack.core.errors import InputError
from feedstack.core.events import Click, Dwell, Impression
from feedstack.core.spec import Spec
from feedstack.registry.assignment import arm_of
from feedstack.registry.experiment import (
    Arm,
    ArmOutcome,
    Experiment,
    Exposure,
    ExposureLog,
    analyze,
    equal_arms,
    list_experiments,
    load_experiment,
    outcomes_from_events,
    start_experiment,
    stop_experiment,
)

T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)


def test_start_load_stop(tmp_path: Path) -> None:
    exp = start_experiment(tmp_path, "ranker-v2", equal_arms(["news-a", "news-b", "news-c"]), T0)
    assert [a.name for a in exp.arms] == ["control", "b", "c"]
    assert exp.salt == "exp:ranker-v2" and exp.running
    assert load_experiment(tmp_path, "ranker-v2") == exp
    with pytest.raises(InputError, match="exists already"):
        start_experiment(tmp_path, "ranker-v2", exp.arms, T0)
    stopped = stop_experiment(tmp_path, "ranker-v2", T0 + timedelta(days=7))
    assert not stopped.running and load_experiment(tmp_path, "ranker-v2") == stopped
    with pytest.raises(InputError, match="stopped already"):
        stop_experiment(tmp_path, "ranker-v2", T0)
    assert list_experiments(tmp_path) == [stopped]


@pytest.mark.parametrize(
    ("name", "arms", "match"),
    [
        ("Bad Name", equal_arms(["a", "b"]), "experiment name"),
        ("ok", (Arm("control", "a", 1.0),), ">= 2 arms"),
        ("ok", (Arm("x", "a", 0.5), Arm("x", "b", 0.5)), "distinct"),
        ("ok", (Arm("a", "a", 0.5), Arm("b", "b", 0.6)), "sum to 1"),
    ],
)
def test_bad_experiments_name_the_field(name: str, arms: tuple[Arm, ...], match: str) -> None:
    with pytest.raises(InputError, match=match):
        Experiment(name, arms, "salt", T0.isoformat())


def test_assignment_is_stable_and_follows_the_shares() -> None:
    exp = Experiment("e", (Arm("control", "a", 0.2), Arm("b", "b", 0.8)), "exp:e", T0.isoformat())
    users = [f"u{i}" for i in range(20_000)]
    arms = [exp.assign(u).name for u in users]
    assert arms == [exp.assign(u).name for u in users]  # same answer every time
    assert arms == [arm_of(u, "exp:e", exp.shares) for u in users]
    share = Counter(arms)["control"] / len(users)
    assert share == pytest.approx(0.2, abs=0.01)
    other = Experiment("f", exp.arms, "exp:f", T0.isoformat())
    moved = sum(exp.assign(u).name != other.assign(u).name for u in users[:2000])
    assert moved > 400  # a new salt reshuffles


def test_exposure_log_round_trip(tmp_path: Path) -> None:
    log = ExposureLog(tmp_path, "e")
    rows = [Exposure(f"r{i}", f"u{i % 3}", "b", T0.isoformat()) for i in range(5)]
    assert log.log(rows) == 5
    with open(log.path, "a", encoding="utf-8") as f:
        f.write('{"request_id": "torn')
    assert log.log(rows[:1]) == 1
    assert log.read() == rows + rows[:1]


def test_outcomes_join_events_by_request() -> None:
    exp = Experiment("e", equal_arms(["a", "b"]), "s", T0.isoformat())
    exposures = [
        Exposure("r1", "u1", "control", ""),
        Exposure("r2", "u1", "control", ""),
        Exposure("r3", "u2", "b", ""),
    ]

    def imp(rid: str, user: str, n: int) -> Impression:
        items = [f"a{i}" for i in range(n)]
        return Impression(
            event_id=f"i{rid}", event_time=T0, request_id=rid, user_id=user,
            item_ids=items, model_version="m",
        )  # fmt: skip

    events = [
        imp("r1", "u1", 10),
        imp("r2", "u1", 10),
        imp("r3", "u2", 5),
        imp("r9", "u9", 10),  # not in the experiment
        Click(event_id="c1", event_time=T0, user_id="u1", article_id="a1", request_id="r1"),
        Click(event_id="c2", event_time=T0, user_id="u1", article_id="a2", request_id="r2"),
        Click(event_id="c3", event_time=T0, user_id="u2", article_id="a1", request_id="r3"),
        Click(event_id="c9", event_time=T0, user_id="u9", article_id="a1", request_id="r9"),
        Dwell(event_id="d3", event_time=T0, user_id="u2", article_id="a1", dwell_ms=30_000,
              request_id="r3"),
    ]  # fmt: skip
    out = outcomes_from_events(exp, exposures, events)
    assert (out["control"].ctr.n, out["control"].ctr.sx, out["control"].ctr.sy) == (1, 2, 20)
    assert (out["b"].ctr.n, out["b"].ctr.sx, out["b"].ctr.sy) == (1, 1, 5)
    assert (out["control"].requests, out["b"].requests) == (2, 1)
    assert out["b"].dwell_ms == 30_000 and out["control"].dwell_ms == 0
    assert (out["control"].users, out["b"].users) == (1, 1)


def test_srm_counts_exposed_users_even_without_impressions() -> None:
    """An arm whose impressions never reach the log still shows up as a sample-ratio mismatch."""
    exp = Experiment("e", equal_arms(["a", "b"]), "s", T0.isoformat())
    exposures = [Exposure(f"r{i}", f"u{i}", "control" if i % 2 else "b", "") for i in range(400)]
    logged = [
        Impression(
            event_id=f"i{i}", event_time=T0, request_id=f"r{i}", user_id=f"u{i}",
            item_ids=["a1"], model_version="m",
        )
        for i in range(400)
        if i % 2 or i % 10 == 0  # arm b lost 80 % of its impressions
    ]  # fmt: skip
    out = outcomes_from_events(exp, exposures, logged)
    assert (out["control"].users, out["b"].users) == (200, 200)
    assert out["b"].ctr.n == 40
    res = analyze(exp, out, Spec())
    srm = res["srm"]
    assert srm["users"] == [200, 200] and srm["p_value"] == pytest.approx(1.0)  # assignment ok
    assert srm["analyzed_users"] == [200, 40] and srm["analyzed_p_value"] < 1e-6
    assert srm["mismatch"]
    assert res["arms"]["b"]["users_with_impressions"] == 40


def _outcome(rng: np.random.Generator, users: int, p: float) -> ArmOutcome:
    y = rng.integers(5, 40, users).astype(float)
    x = rng.binomial(y.astype(int), p).astype(float)
    return ArmOutcome.of(x, y, int(y.sum() // 10), float(x.sum() * 60_000))


def test_analysis_of_three_arms() -> None:
    rng = np.random.default_rng(0)
    exp = Experiment("e", equal_arms(["a", "b", "c"]), "s", T0.isoformat())
    outcomes = {
        "control": _outcome(rng, 4000, 0.10),
        "b": _outcome(rng, 4000, 0.12),
        "c": _outcome(rng, 4000, 0.10),
    }
    res = analyze(exp, outcomes, Spec())
    assert res["interval_level"] == pytest.approx(1 - 0.05 / 2)  # Bonferroni over 2 comparisons
    b, c = res["arms"]["b"], res["arms"]["c"]
    assert b["lift"]["low"] < 0.2 < b["lift"]["high"] and b["significant"]
    assert c["lift"]["low"] < 0.0 < c["lift"]["high"] and not c["significant"]
    assert b["dwell_s_per_click"] == pytest.approx(60.0)
    g = res["sample_size"]
    assert g["target_relative_lift"] == 0.05 and g["users_per_arm_now"] == 4000
    assert g["enough"] == (g["users_per_arm"] <= 4000)
    assert g["impressions_per_arm_two_proportion"] > 0
    assert not res["srm"]["mismatch"]


def test_analysis_flags_a_sample_ratio_mismatch() -> None:
    rng = np.random.default_rng(1)
    exp = Experiment("e", equal_arms(["a", "b"]), "s", T0.isoformat())
    res = analyze(exp, {"control": _outcome(rng, 4000, 0.1), "b": _outcome(rng, 4400, 0.1)}, Spec())
    assert res["srm"]["mismatch"] and res["srm"]["p_value"] < 0.001
    with pytest.raises(InputError, match="no data for arms"):
        analyze(exp, {"control": _outcome(rng, 10, 0.1)}, Spec())
