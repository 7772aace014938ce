"""The registry commands end to end: deploy, rollout, lineage, experiment, bench."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import orjson
from typer.testing import CliRunner

from feedstack.cli.main import app
from feedstack.core.events import Click, Impression
from feedstack.core.spec import load_spec
from feedstack.registry.experiment import Exposure, ExposureLog, load_experiment
from feedstack.storage.eventlog import open_event_log
from tests.contract.test_registry_mlflow import fresh_sqlite_registry, model_folder

runner = CliRunner()
T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def observed(path: Path, canary_clicks: int) -> str:
    doc = {
        "canary": {"requests": 400, "latency_p99_ms": 80, "impressions": 4000,
                   "clicks": canary_clicks},
        "control": {"requests": 4000, "latency_p99_ms": 82, "impressions": 40000, "clicks": 6000},
    }  # fmt: skip
    path.write_text(json.dumps(doc), encoding="utf-8")
    return str(path)


def test_deploy_rollout_lineage(project: Path, tmp_path: Path) -> None:
    fresh_sqlite_registry(project)
    for v in ("news-a", "news-b", "news-c"):
        model_folder(project, v)
    p = ("-p", str(project))
    code, _, err = run("deploy", "news-b", "--canary", "10", *p)
    assert code == 2 and "champion" in err
    code, _, err = run("deploy", "news-zz", "--canary", "10", "--champion", "news-a", *p)
    assert code == 2 and "news-zz" in err
    code, out, _ = run("deploy", "news-b", "--canary", "10", "--champion", "news-a", *p, "--json")
    assert code == 0, out
    doc = orjson.loads(out)
    assert doc["canary_pct"] == 10 and doc["registry"]["challenger"]["aliases"] == ["challenger"]

    bad = tmp_path / "bad.json"
    bad.write_text('{"canary": {"requests": -1}, "control": {"requests": 1}}')
    code, _, err = run("rollout", "step", "--observed", str(bad), *p)
    assert code == 2 and "canary.requests" in err
    code, out, _ = run("rollout", "step", "--observed", observed(tmp_path / "o.json", 200), *p,
                       "--json")  # fmt: skip
    assert code == 0 and orjson.loads(out)["action"] == "rollback"
    code, out, _ = run("rollout", "status", *p, "--json")
    status = orjson.loads(out)
    assert status["state"]["challenger"] is None and status["decisions"] == 2

    assert run("deploy", "news-c", "--canary", "5", *p)[0] == 0
    code, out, _ = run("rollout", "promote", *p, "--json")
    assert code == 0 and orjson.loads(out)["state"]["champion"] == "news-c"
    code, out, _ = run("lineage", "champion", *p, "--json")
    lineage = orjson.loads(out)
    assert code == 0 and lineage["model"] == "news-c" and lineage["aliases"] == ["champion"]
    assert lineage["data"]["training_rows_hash"] == "rows-news-c"
    assert json.loads(lineage["tags"]["rollout.last_decision"])["action"] == "promote"
    code, out, _ = run("lineage", "news-b", *p, "--json")
    assert code == 0 and orjson.loads(out)["tags"]["rollout.action"] == "rollback"
    assert run("rollout", "rollback", *p)[0] == 2  # nothing in progress


def test_experiment_start_status_stop(project: Path) -> None:
    p = ("-p", str(project))
    for v in ("news-a", "news-b"):  # an arm's version must be a model the servers can load
        model_folder(project, v)
    code, _, err = run("experiment", "start", "ab1", "--arm", "control", *p)
    assert code == 2 and "NAME=VERSION" in err
    code, out, _ = run(
        "experiment", "start", "ab1", "--arm", "control=news-a", "--arm", "b=news-b", *p, "--json"
    )
    assert code == 0 and orjson.loads(out)["salt"] == "exp:ab1"
    exp = load_experiment(project, "ab1")
    events: list[Impression | Click] = []
    exposures = []
    for i in range(200):
        user = f"u{i}"
        arm = exp.assign(user).name
        rid = f"r{i}"
        exposures.append(Exposure(rid, user, arm, T0.isoformat()))
        items = [f"a{j}" for j in range(10)]
        events.append(Impression(event_id=f"i{i}", event_time=T0, request_id=rid, user_id=user,
                                 item_ids=items, model_version=arm))  # fmt: skip
        for c in range(1 + (i % 3 if arm == "b" else i % 2)):
            events.append(Click(event_id=f"c{i}-{c}", event_time=T0, user_id=user,
                                article_id=f"a{c}", request_id=rid))  # fmt: skip
    ExposureLog(project, "ab1").log(exposures)
    log = open_event_log(load_spec(project).backends.event_log, project)
    log.append(events)
    log.close()
    code, out, _ = run("experiment", "status", "ab1", *p, "--json")
    assert code == 0, out
    res = orjson.loads(out)
    arms = res["arms"]
    assert arms["control"]["users"] + arms["b"]["users"] == 200
    assert arms["control"]["requests"] + arms["b"]["requests"] == 200
    assert arms["b"]["lift"]["estimate"] > 0 and res["exposures"] == 200
    assert "users_per_arm" in res["sample_size"] and "mismatch" in res["srm"]
    code, out, _ = run("experiment", "status", *p, "--json")
    assert [e["name"] for e in orjson.loads(out)] == ["ab1"]
    assert run("experiment", "stop", "ab1", *p)[0] == 0
    assert run("experiment", "stop", "ab1", *p)[0] == 2


def test_bench_rollout_and_abtest_record_measurements(project: Path) -> None:
    p = ("-p", str(project))
    code, out, _ = run(
        "bench", "rollout", "--users", "20000", "--bad-reps", "2", "--good-reps", "0", *p, "--json"
    )
    assert code == 0, out
    assert orjson.loads(out)["targets"]["bad_within_10_min"]
    code, out, _ = run(
        "bench", "abtest", "--users", "5000", "--repetitions", "2", "--minutes", "10", *p, "--json"
    )
    assert code == 0 and orjson.loads(out)["repetitions"] == 2
    kinds = sorted(f.name.split("-2")[0] for f in (project / "measurements").glob("*.json"))
    assert kinds == ["bench-abtest", "bench-rollout"]
