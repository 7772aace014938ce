"""Drift statistics, the windowed detector and the retrain policy: known answers, fixed seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from feedstack.core.errors import InputError
from feedstack.core.spec import Drift, Monitor
from feedstack.monitor.detector import DriftDetector
from feedstack.monitor.drift import (
    UNSEEN,
    CategoricalReference,
    NumericReference,
    drift_report,
    kl,
    psi,
    smoothed_shares,
)
from feedstack.monitor.retrain import apply_retrain, retrain_policy

DRIFT = Drift()
MONITOR = Monitor()
TOPICS = np.array(["politics", "sports", "science", "travel"])


def test_psi_and_kl_known_answers() -> None:
    p = np.array([0.5, 0.5])
    q = np.array([0.25, 0.75])
    # KL(q||p) = .25 ln .5 + .75 ln 1.5; PSI = (q - p) . ln(q / p)
    assert kl(p, q) == pytest.approx(0.25 * math.log(0.5) + 0.75 * math.log(1.5))
    assert psi(p, q) == pytest.approx(-0.25 * math.log(0.5) + 0.25 * math.log(1.5))
    assert psi(p, q) == pytest.approx(kl(p, q) + kl(q, p))  # PSI is the symmetrized KL
    assert kl(p, p) == 0.0 and psi(p, p) == 0.0


def test_smoothing_keeps_empty_bins_finite() -> None:
    shares = smoothed_shares([0, 10])
    assert shares == pytest.approx([0.5 / 11, 10.5 / 11])
    assert math.isfinite(kl(smoothed_shares([10, 0]), shares))


def test_quantile_bins_hold_equal_reference_mass() -> None:
    ref = NumericReference.of(np.arange(1000.0), bins=10)
    assert ref.edges.size == 9
    assert ref.counts.sum() == 1000 and all(abs(c - 100) <= 1 for c in ref.counts.tolist())
    # Edges are inclusive on the right: the bin of a value equal to an edge is the lower one.
    assert ref.counts_of([ref.edges[0]]).tolist()[0] == 1


def test_discrete_feature_merges_tied_edges() -> None:
    ref = NumericReference.of(np.array([0.0] * 900 + [1.0] * 100), bins=10)
    assert ref.edges.tolist() == [0.0]
    assert ref.counts.tolist() == [900, 100]


def test_categorical_counts_unseen_bin() -> None:
    ref = CategoricalReference.of(["a", "b", "b"])
    assert ref.categories == ("a", "b", UNSEEN)
    assert ref.counts_of(["b", "z", "a", "zz"]).tolist() == [1, 1, 2]


def test_same_distribution_no_alert() -> None:
    rng = np.random.default_rng(0)
    ref = {
        "dwell_ms": rng.lognormal(9.6, 0.8, 20_000),
        "topic": rng.choice(TOPICS, 20_000, p=[0.4, 0.3, 0.2, 0.1]),
    }
    live = {
        "dwell_ms": rng.lognormal(9.6, 0.8, 1_000),
        "topic": rng.choice(TOPICS, 1_000, p=[0.4, 0.3, 0.2, 0.1]),
    }
    report = drift_report(ref, live, DRIFT, MONITOR)
    assert report.drifted == ()
    by = {f.feature: f for f in report.features}
    assert by["dwell_ms"].kind == "numeric" and by["dwell_ms"].ks_p_value is not None
    assert by["topic"].kind == "categorical" and by["topic"].ks_p_value is None
    assert all(f.verdict == "ok" for f in report.features)


def test_shifted_distribution_alerts() -> None:
    rng = np.random.default_rng(1)
    ref = {
        "dwell_ms": rng.lognormal(9.6, 0.8, 20_000),
        "topic": rng.choice(TOPICS, 20_000, p=[0.4, 0.3, 0.2, 0.1]),
    }
    live = {
        "dwell_ms": rng.lognormal(9.6 + 0.7, 0.8, 1_000),  # dwell doubled
        "topic": rng.choice(TOPICS, 1_000, p=[0.2, 0.2, 0.2, 0.4]),  # travel surges
    }
    report = drift_report(ref, live, DRIFT, MONITOR)
    assert report.drifted == ("dwell_ms", "topic")
    dwell = report.features[0]
    assert dwell.ks_p_value is not None and dwell.ks_p_value < DRIFT.ks_p_value
    assert dwell.kl is not None and dwell.kl > DRIFT.kl_alert
    assert any(r.startswith("KS p") for r in dwell.reasons)


def test_tiny_significant_shift_is_not_material() -> None:
    """KS rejects a 3 % shift on 50k values, but the binned divergences say it does not matter."""
    rng = np.random.default_rng(2)
    ref = {"x": rng.normal(0, 1, 50_000)}
    live = {"x": rng.normal(0.03, 1, 50_000)}
    f = drift_report(ref, live, DRIFT, MONITOR).features[0]
    assert f.ks_p_value is not None and f.ks_p_value < DRIFT.ks_p_value
    assert f.verdict == "ok"


def test_small_window_gives_no_verdict() -> None:
    rng = np.random.default_rng(3)
    report = drift_report(
        {"x": rng.normal(0, 1, 5_000)}, {"x": rng.normal(5, 1, 50)}, DRIFT, MONITOR
    )
    assert report.features[0].verdict == "insufficient"
    assert report.drifted == ()


def test_integer_coded_category_by_kind_override() -> None:
    ref = {"topic_id": np.repeat(np.arange(4), 500)}
    live = {"topic_id": np.repeat(np.arange(4), 100)}
    f = drift_report(ref, live, DRIFT, MONITOR, kinds={"topic_id": "categorical"}).features[0]
    assert f.kind == "categorical" and f.verdict == "ok" and f.kl == pytest.approx(0.0, abs=2e-3)


def test_detector_reports_first_detection_time() -> None:
    rng = np.random.default_rng(4)
    det = DriftDetector({"x": rng.normal(0, 1, 20_000)}, DRIFT, MONITOR)
    shift_at_s = 600.0
    for minute in range(1, 21):
        t = minute * 60.0
        mean = 1.0 if t > shift_at_s else 0.0
        det.add(t, {"x": rng.normal(mean, 1, 150)})
        det.evaluate(t)
    first = det.first_drift_s["x"]
    assert shift_at_s < first <= shift_at_s + MONITOR.drift_window_minutes * 60
    # The window only holds the last 5 minutes: older chunks are gone.
    assert det.window(1200.0)["x"].size == 5 * 150


def test_detector_rejects_unknown_features_and_time_going_back() -> None:
    det = DriftDetector({"x": np.arange(100.0)}, DRIFT, MONITOR)
    with pytest.raises(InputError, match="unknown features"):
        det.add(0.0, {"y": [1.0]})
    det.add(10.0, {"x": [1.0]})
    with pytest.raises(InputError, match="before the last"):
        det.add(5.0, {"x": [1.0]})


def _report(shift: bool, feature: str = "dwell_ms") -> object:
    rng = np.random.default_rng(5)
    return drift_report(
        {feature: rng.normal(0, 1, 5_000)},
        {feature: rng.normal(2.0 if shift else 0.0, 1, 1_000)},
        DRIFT,
        MONITOR,
    )


def test_retrain_policy_decisions() -> None:
    from feedstack.monitor.drift import DriftReport

    drifted, calm, score = _report(True), _report(False), _report(True, "score")
    assert isinstance(drifted, DriftReport)
    assert isinstance(calm, DriftReport) and isinstance(score, DriftReport)
    day = 86_400.0
    assert not retrain_policy(calm, MONITOR, now_s=10 * day, last_trained_s=0).retrain
    yes = retrain_policy(drifted, MONITOR, now_s=10 * day, last_trained_s=0)
    assert yes.retrain and yes.features == ("dwell_ms",)
    fresh = retrain_policy(drifted, MONITOR, now_s=10 * day, last_trained_s=10 * day - 3600)
    assert not fresh.retrain and "cooldown" in fresh.reasons[0]
    only_score = retrain_policy(score, MONITOR, now_s=10 * day, last_trained_s=None)
    assert not only_score.retrain and "roll back" in only_score.reasons[0]


def test_apply_retrain_dry_run_never_calls() -> None:
    from feedstack.monitor.retrain import RetrainDecision

    calls: list[int] = []

    def run() -> str:
        calls.append(1)
        return "trained"

    yes = RetrainDecision(True, ("drift in x",), ("x",))
    dry = apply_retrain(yes, run, dry_run=True)
    assert not dry.ran and calls == []
    done = apply_retrain(yes, run, dry_run=False)
    assert done.ran and done.result == "trained" and calls == [1]
    no = apply_retrain(RetrainDecision(False, ("no feature drifted",)), run, dry_run=False)
    assert not no.ran and calls == [1]
