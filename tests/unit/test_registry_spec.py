"""The spec's registry section: defaults, and errors that name the key and value."""

from __future__ import annotations

import pytest

from feedstack.core.errors import ConfigError
from feedstack.core.spec import Spec, parse_spec, render_spec


def test_defaults_are_the_reference_case() -> None:
    r = Spec().registry
    assert r.tracking_uri == "sqlite://mlruns.db" and r.artifact_root == "file://mlartifacts"
    assert r.canary_steps_pct == (1.0, 5.0, 10.0, 25.0, 50.0, 100.0)
    assert (r.ctr_alpha, r.experiment_alpha, r.srm_p_value) == (0.05, 0.05, 0.001)
    assert "registry:" in render_spec(Spec())


def test_postgres_backend_is_accepted() -> None:
    url = "postgresql://mlflow@db.internal:5432/mlflow"
    assert parse_spec({"registry": {"tracking_uri": url}}).registry.tracking_uri == url


@pytest.mark.parametrize(
    ("section", "match"),
    [
        ({"canary_steps_pct": [1, 5, 50]}, "end at 100"),
        ({"canary_steps_pct": [5, 1, 100]}, "must increase"),
        ({"canary_steps_pct": [0, 100]}, "end at 100"),
        ({"ctr_alpha": 1.5}, "registry.ctr_alpha"),
        ({"stages": ["Production"]}, "unknown key 'registry.stages'"),
    ],
)
def test_bad_values_name_the_key(section: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_spec({"registry": section})
