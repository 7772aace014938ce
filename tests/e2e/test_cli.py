"""The CLI end to end: init, ingest with --json, exit codes, --help everywhere."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from feedstack.cli.main import app
from tests.factories import click, jsonl, mixed

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_init_json(tmp_path: Path) -> None:
    code, out, _ = run("init", str(tmp_path / "p"), "--json")
    assert code == 0
    doc = orjson.loads(out)
    assert doc["traffic"]["daily_active_users"] == 50_000_000
    assert run("init", str(tmp_path / "p"))[0] == 2  # exists already


def test_ingest_json_counts_and_reingest(tmp_path: Path) -> None:
    run("init", str(tmp_path / "p"))
    data = tmp_path / "in.jsonl"
    data.write_bytes(jsonl(mixed(20)) + b'{"type": "click"}\n' + b'{"type": "cli')
    code, out, _ = run("ingest", str(data), "-p", str(tmp_path / "p"), "--json")
    assert code == 0
    doc = orjson.loads(out)
    assert {k: doc[k] for k in ("accepted", "duplicates", "rejected")} == {
        "accepted": 20,
        "duplicates": 0,
        "rejected": 2,
    }
    assert Path(doc["dead_letter"]).exists()
    code, out, _ = run("ingest", str(data), "-p", str(tmp_path / "p"), "--json")
    doc = orjson.loads(out)
    assert (code, doc["accepted"], doc["duplicates"], doc["rejected"]) == (0, 0, 20, 2)


def test_ingest_binary_file_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    run("init", str(tmp_path / "p"))
    good = tmp_path / "good.jsonl"
    good.write_bytes(jsonl([click(1)]))
    binary = tmp_path / "blob.jsonl"
    binary.write_bytes(bytes(range(256)) * 10)
    code, out, err = run("ingest", str(good), str(binary), "-p", str(tmp_path / "p"), "--json")
    assert code == 2
    assert "binary" in err
    assert out == ""
    assert not (tmp_path / "p" / "data").exists()


def test_missing_spec_exits_2(tmp_path: Path) -> None:
    (tmp_path / "e.jsonl").write_bytes(jsonl([click(1)]))
    code, _, err = run("ingest", str(tmp_path / "e.jsonl"), "-p", str(tmp_path))
    assert code == 2
    assert "feedstack init" in err


def test_bad_format_option_exits_2(tmp_path: Path) -> None:
    run("init", str(tmp_path / "p"))
    (tmp_path / "e.jsonl").write_bytes(jsonl([click(1)]))
    code, _, err = run("ingest", str(tmp_path / "e.jsonl"), "-p", str(tmp_path / "p"), "-f", "xml")
    assert code == 2
    assert "--format 'xml'" in err


@pytest.mark.parametrize("command", [[], ["init"], ["ingest"], ["world"], ["world", "generate"]])
def test_help_everywhere(command: list[str]) -> None:
    code, out, _ = run(*command, "--help")
    assert code == 0
    assert "Usage" in out
