"""The engine setting: spec key and --engine, validated with errors that name key and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedstack.batch.engine import Engine
from feedstack.core.errors import ConfigError, InputError
from feedstack.core.spec import Spec, check_engine, parse_spec


@pytest.mark.parametrize(
    "value", ["local", "local[2]", "local[*]", "spark://h:7077", "spark://a:1,b:2"]
)
def test_engine_forms_accepted(value: str) -> None:
    assert parse_spec({"engine": value}).engine == value
    assert check_engine(value) == value


@pytest.mark.parametrize("value", ["spark", "local[0]", "local[x]", "spark://host", "yarn", ""])
def test_bad_engine_names_key_and_value(value: str) -> None:
    with pytest.raises(ConfigError, match=r"key 'engine' = '.*': .*must be local, local\[N\]"):
        parse_spec({"engine": value})
    with pytest.raises(InputError, match=r"--engine"):
        check_engine(value)


def test_spark_settings_validated() -> None:
    with pytest.raises(ConfigError, match=r"spark.driver_memory"):
        parse_spec({"spark": {"driver_memory": "lots"}})
    spec = parse_spec({"engine": "local[2]", "spark": {"partitions": 6, "conf": {"a": "b"}}})
    engine = Engine.from_spec(spec)
    assert (engine.master, engine.cores, engine.n_partitions()) == ("local[2]", 2, 6)
    assert Engine.from_spec(Spec(), "local[3]").n_partitions() == 12  # 4 per core by default
    assert not Engine.from_spec(Spec()).is_spark


def test_demo_scale_backends_set_the_spec(project: Path) -> None:
    """The scale mode's batch part puts the offline stages on Spark local[2] (the stream part,
    which needs a broker and Redis, is exercised by the scale demo's own test)."""
    from feedstack.core.spec import load_spec
    from feedstack.demo.backends import Backends, BatchPart

    assert Backends.for_mode("embedded").apply(project) == {}
    batch = Backends("scale", [BatchPart()])
    changed = batch.apply(project)
    spec = load_spec(project)
    assert spec.engine == changed["engine"] == "local[2]"
    assert batch.engines()["batch"]["engine"] == "spark local[2]"
    assert any(isinstance(p, BatchPart) for p in Backends.for_mode("scale").parts)
    with pytest.raises(InputError, match="--backends 'cloud': valid: embedded, scale"):
        Backends.for_mode("cloud")


@pytest.mark.parametrize(
    "command",
    [
        ["features", "backfill", "--sink", "memory"],
        ["features", "training-rows"],
        ["candidates", "build"],
        ["bench", "scale"],
    ],
)
def test_engine_option_rejects_bad_values_with_exit_2(project: Path, command: list[str]) -> None:
    from typer.testing import CliRunner

    from feedstack.cli.main import app

    flag = "--engines" if command[0] == "bench" else "--engine"
    result = CliRunner().invoke(app, [*command, flag, "yarn", "-p", str(project)])
    assert result.exit_code == 2
    assert "'yarn': must be local, local[N]" in result.stderr
