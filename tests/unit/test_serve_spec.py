"""The spec's serve section: stage budgets derived from the latency objective, checked keys."""

from __future__ import annotations

import pytest

from feedstack.core.errors import ConfigError
from feedstack.core.spec import Spec, parse_spec


def test_default_budgets_are_shares_of_the_p95_objective() -> None:
    spec = Spec()
    budgets = spec.serve.budgets_ms(spec.latency)
    assert budgets == pytest.approx(
        {"candidates": 5.0, "user_features": 5.0, "item_features": 1.0, "rank": 4.0, "filter": 1.0}
    )
    assert sum(budgets.values()) == pytest.approx(16.0)
    tight = parse_spec({"latency": {"p95_ms": 60, "p99_alert_ms": 70}})
    assert tight.serve.budgets_ms(tight.latency)["rank"] == pytest.approx(2.0)  # scales with it
    assert spec.backends.candidate_cache == "sqlite://data/candidates.sqlite"
    assert spec.serve.clock == "system"


def test_unknown_stage_or_bad_share_names_the_key() -> None:
    with pytest.raises(ConfigError, match="serve"):
        parse_spec({"serve": {"stage_shares": {"candidatez": 0.1}}})
    with pytest.raises(ConfigError, match=r"serve\.clock"):
        parse_spec({"serve": {"clock": "sundial"}})
    with pytest.raises(ConfigError, match=r"serve\.max_per_topic"):
        parse_spec({"serve": {"max_per_topic": 0}})
