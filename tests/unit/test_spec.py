"""The spec: reference-case defaults, strict keys, errors that name the key and the value."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from feedstack.core.errors import ConfigError
from feedstack.core.spec import Spec, load_spec, parse_spec, write_default_spec


def test_defaults_are_the_reference_case() -> None:
    s = Spec()
    assert s.traffic.daily_active_users == 50_000_000
    assert s.traffic.requests_per_user_per_day == 10
    assert s.traffic.peak_to_average == 3
    assert s.traffic.zones == 3
    assert (s.traffic.autoscaling.per_traffic_surge_pct, s.traffic.autoscaling.add_nodes_pct) == (
        10,
        2,
    )
    assert (s.latency.p95_ms, s.latency.p99_alert_ms) == (120, 130)
    assert s.freshness.feature_max_lag_s == 120
    assert s.budget.compute_usd_per_month == 28_000
    assert s.kpi.ctr_lift_min == 0.05
    assert s.kpi.value_per_click_usd > 0
    assert s.drift.kl_alert == 0.05


def test_init_writes_a_spec_that_round_trips(tmp_path: Path) -> None:
    path = write_default_spec(tmp_path / "p")
    assert load_spec(tmp_path / "p") == Spec()
    assert "50000000" in path.read_text()


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    write_default_spec(tmp_path)
    with pytest.raises(ConfigError, match="exists already"):
        write_default_spec(tmp_path)


def test_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'latency.p95_msec' \(value 100\)"):
        parse_spec({"latency": {"p95_msec": 100}})


def test_bad_value_names_key_and_value() -> None:
    with pytest.raises(ConfigError, match=r"key 'traffic.daily_active_users' = -5"):
        parse_spec({"traffic": {"daily_active_users": -5}})


def test_cross_field_check() -> None:
    with pytest.raises(ConfigError, match="p99_alert_ms"):
        parse_spec({"latency": {"p95_ms": 200, "p99_alert_ms": 150}})


def test_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="feedstack init"):
        load_spec(tmp_path)


def test_invalid_yaml(tmp_path: Path) -> None:
    (tmp_path / "feedstack.yaml").write_text("traffic: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_spec(tmp_path)


def test_partial_spec_keeps_other_defaults(tmp_path: Path) -> None:
    spec = {"budget": {"compute_usd_per_month": 9}}
    (tmp_path / "feedstack.yaml").write_text(yaml.safe_dump(spec))
    s = load_spec(tmp_path)
    assert s.budget.compute_usd_per_month == 9
    assert s.latency.p95_ms == 120
