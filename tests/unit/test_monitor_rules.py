"""Generated alert rules, their promtool tests and the dashboard: thresholds are the spec's, and
the real promtool checks the rules and runs the unit tests (skipped without promtool, a failure
under CI=true)."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
import yaml

from feedstack.core.spec import Spec, parse_spec
from feedstack.monitor.bundle import promtool_check, promtool_path, write_monitoring_files
from feedstack.monitor.rules import alerting_rules, rules_document, usd_per_request


def _promtool_or_skip() -> None:
    if promtool_path() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but promtool is missing (.ci/run installs Debian's prometheus)")
        pytest.skip("promtool not installed (apt-get install prometheus)")


def _alerts(spec: Spec) -> dict[str, dict[str, object]]:
    return {str(r["alert"]): r for r in alerting_rules(spec)}


def test_thresholds_come_from_the_spec() -> None:
    spec = parse_spec(
        {
            "latency": {"p95_ms": 100, "p99_alert_ms": 200, "availability": 0.99},
            "drift": {"kl_alert": 0.07},
            "freshness": {"feature_max_lag_s": 60},
            "monitor": {"ctr_drop_alert": 0.2, "usd_per_million_requests": 2.0},
        }
    )
    a = _alerts(spec)
    assert str(a["FeedstackLatencyP99High"]["expr"]).endswith("> 0.2")
    # 1 - 0.99 = 1 % budget; 14.4x -> 0.144
    assert "ratio_rate1h > 0.144 and" in str(a["FeedstackAvailabilityBudgetBurn"]["expr"])
    assert 'le="0.1"' in yaml.safe_dump(rules_document(spec))  # the bucket at p95_ms
    assert "feedstack_drift_kl_divergence > 0.07" in str(a["FeedstackFeatureDrift"]["expr"])
    assert str(a["FeedstackFeatureLagHigh"]["expr"]).endswith("> 60")
    assert "< 0.8 *" in str(a["FeedstackCtrDrop"]["expr"])
    assert usd_per_request(spec) == pytest.approx(2e-6)


def test_default_cost_is_the_budget_over_planned_traffic() -> None:
    spec = Spec()
    month_requests = 50e6 * 10 * 365.2425 / 12
    assert usd_per_request(spec) * month_requests == pytest.approx(28_000.0)


def test_files_are_written_and_the_dashboard_has_every_panel(tmp_path: Path) -> None:
    paths = write_monitoring_files(Spec(), tmp_path / "mon")
    assert sorted(p.name for p in paths.values()) == [
        "dashboard.json",
        "rules.yml",
        "rules_test.yml",
    ]
    board = orjson.loads(paths["dashboard.json"].read_bytes())
    titles = [p["title"] for p in board["panels"]]
    for needle in (
        "latency",
        "burn",
        "fallback",
        "hit rate",
        "source mix",
        "score",
        "CTR",
        "lag",
        "queue",
        "Ingest",
        "drift",
        "cost",
    ):
        assert any(needle.lower() in t.lower() for t in titles), needle
    assert all(p["targets"] and all(t["expr"] for t in p["targets"]) for p in board["panels"])
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    tests = yaml.safe_load(paths["rules_test.yml"].read_text())
    tested = {t["alertname"] for g in tests["tests"] for t in g["alert_rule_test"]}
    assert tested == set(_alerts(Spec()))  # every alert has a promtool test


@pytest.mark.parametrize(
    "spec",
    [
        Spec(),
        parse_spec(
            {
                "latency": {"p95_ms": 200, "p99_alert_ms": 300, "availability": 0.995},
                "drift": {"kl_alert": 0.1, "psi_alert": 0.25, "ks_p_value": 0.001},
                "freshness": {"feature_max_lag_s": 30},
                "registry": {"max_fallback_rate": 0.02},
                "budget": {"compute_usd_per_month": 5000},
                "monitor": {"ctr_drop_alert": 0.15, "drift_min_samples": 500},
            }
        ),
    ],
    ids=["reference", "other-thresholds"],
)
def test_promtool_checks_and_tests_the_rules(tmp_path: Path, spec: Spec) -> None:
    _promtool_or_skip()
    write_monitoring_files(spec, tmp_path)
    result = promtool_check(tmp_path)
    assert result["check"]["ok"], result["check"]["output"]
    assert "SUCCESS: 20 rules found" in result["check"]["output"]
    assert result["test"]["ok"], result["test"]["output"]


def test_promtool_test_fails_when_a_rule_is_wrong(tmp_path: Path) -> None:
    """The unit tests have teeth: a p99 threshold that no longer matches the spec fails them."""
    _promtool_or_skip()
    write_monitoring_files(Spec(), tmp_path)
    rules = tmp_path / "rules.yml"
    rules.write_text(rules.read_text().replace("))) > 0.13", "))) > 0.5"))
    result = promtool_check(tmp_path)
    assert result["check"]["ok"]
    assert not result["test"]["ok"] and "FeedstackLatencyP99High" in result["test"]["output"]


def test_drift_metrics_publish_a_report() -> None:
    import numpy as np
    from prometheus_client import generate_latest

    from feedstack.monitor.drift import drift_report
    from feedstack.monitor.metrics import DriftMetrics

    rng = np.random.default_rng(0)
    spec = Spec()
    report = drift_report(
        {"x": rng.normal(0, 1, 2000), "topic": rng.choice(["a", "b"], 2000)},
        {"x": rng.normal(3, 1, 500), "topic": rng.choice(["a", "b"], 500)},
        spec.drift,
        spec.monitor,
    )
    m = DriftMetrics()
    m.publish(report.features)
    text = generate_latest(m.registry).decode()
    assert 'feedstack_drift_live_samples{feature="x"} 500.0' in text
    assert 'feedstack_drift_ks_p_value{feature="x"}' in text
    assert 'feedstack_drift_ks_p_value{feature="topic"}' not in text  # categorical: no KS
