"""The main job runs end to end on a small world and reports every stage."""

from __future__ import annotations

from pathlib import Path

import orjson
from typer.testing import CliRunner

from feedstack.cli.main import app
from feedstack.demo.stages import STAGES


def test_demo_runs_every_stage(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--users", "150", "--articles", "80", "--days", "1"]
    args += ["--online-seconds", "3"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.stderr
    doc = orjson.loads(result.stdout)
    assert doc["ok"] is True
    assert list(doc["stage_seconds"]) == [name for name, _, _ in STAGES]
    assert doc["results"]["ingest"]["rejected"] == 0
    assert doc["results"]["ingest"]["reingest_duplicates"] == doc["results"]["ingest"]["accepted"]
    assert orjson.loads((out / "demo.json").read_bytes())["ok"] is True
    # The online half: live traffic over HTTP served and its events accepted, the bad canary
    # rolled back, the report written with its eight sections.
    live = doc["results"]["serve"]
    assert live["ok"] == live["requests"] > 0 and live["events_accepted"] == live["events_posted"]
    assert doc["results"]["rollout"]["bad_canary"]["outcome"] == "rolled_back"
    # The A/B through the live server: both arms served, exposures logged with the impressions,
    # and the report's CTR-lift answer is that A/B's (against the champion).
    ab = doc["results"]["abtest"]
    assert ab["exposures"] > 0 and all(n > 0 for n in ab["users"])
    assert ab["champion"] != ab["challenger"]
    report = orjson.loads((out / "report" / "report.json").read_bytes())
    assert {"problem", "metrics", "data", "model", "serve", "scale", "monitor", "cost"} <= set(
        report
    )
    assert (out / "report" / "report.html").is_file()
    # A real Prometheus saw the injected slowdown and drift (or the stage said how to install it).
    prom = doc["results"]["monitor"]["prometheus"]
    if "skipped" in prom:
        assert "apt-get install prometheus" in prom["skipped"]
    else:
        assert prom["expected_fired"] and prom["false_alarms"] == []
        assert all(a["seconds_after_injection"] >= 0 for a in prom["alerts"])
    lift = report["problem"]["answers"]["ctr_lift"]["value"]
    assert lift is not None and "abtest-live" in lift["source"]
    # Two replicas behind HAProxy (sharded by region), the planner's cores checked against them.
    rep = doc["results"]["replicas"]
    assert rep["ingest_events_per_s"] > 0
    if "skipped" not in rep:
        assert rep["replicas"] == 2 and rep["errors"] == 0
        assert set(rep["requests_per_replica"]) == {"r0", "r1"}
        assert rep["planner_check"]["measured_cores"] > 0
