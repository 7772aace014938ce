"""``feedstack world generate`` end to end: --json summary, bad options exit 2, ingestible."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from feedstack.cli.main import app

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_generate_json_summary(tmp_path: Path) -> None:
    args = ("world", "generate", "--users", "400", "--articles", "120", "--days", "0.25")
    code, out, _ = run(*args, "--seed", "5", "--out", str(tmp_path / "w"), "--json")
    assert code == 0
    doc = orjson.loads(out)
    assert {"events", "users", "articles", "days", "seconds", "path", "counts"} <= doc.keys()
    assert (doc["users"], doc["articles"], doc["days"]) == (400, 120, 0.25)
    assert doc["events"] == sum(doc["counts"].values()) > 0
    assert doc["path"] == str(tmp_path / "w" / "events.jsonl")
    lines = Path(doc["path"]).read_bytes().splitlines()
    assert len(lines) == doc["events"]
    assert orjson.loads((tmp_path / "w" / "world.json").read_bytes())["config"]["seed"] == 5


def test_generate_parquet_and_start(tmp_path: Path) -> None:
    code, _, err = run(
        "world", "generate", "--users", "100", "--days", "0.25", "--format", "parquet",
        "--start", "2026-03-01T06:00:00+01:00", "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 0, err
    assert "events" in err  # the human summary goes to stderr
    assert (tmp_path / "events.parquet").exists()
    world = orjson.loads((tmp_path / "world.json").read_bytes())
    assert world["summary"]["first_event_time"] == "2026-03-01T05:00:00Z"


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (("--users", "-5"), "--users"),
        (("--days", "0"), "--days"),
        (("--articles", "0"), "--articles"),
        (("--format", "xml"), "--format"),
        (("--start", "yesterday"), "--start"),
        (("--start", "2099-01-01"), "--start"),
    ],
)
def test_bad_options_exit_2_naming_the_option(
    tmp_path: Path, args: tuple[str, str], names: str
) -> None:
    code, out, err = run("world", "generate", *args, "--out", str(tmp_path / "w"), "--json")
    assert code == 2
    assert names in err
    assert out == ""
    assert not (tmp_path / "w").exists()


def test_generated_world_ingests_without_rejections(tmp_path: Path) -> None:
    assert run("init", str(tmp_path / "p"))[0] == 0
    out = tmp_path / "w"
    assert run("world", "generate", "--users", "200", "--days", "0.25", "--out", str(out))[0] == 0
    code, stdout, err = run(
        "ingest", str(out / "events.jsonl"), "-p", str(tmp_path / "p"), "--json"
    )
    assert code == 0, err
    doc = orjson.loads(stdout)
    assert doc["rejected"] == 0
    assert doc["accepted"] == len((out / "events.jsonl").read_bytes().splitlines())
