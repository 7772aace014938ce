"""``feedstack monitor`` end to end on a real project (a simulated world ingested), a real
metrics endpoint over HTTP and the real promtool."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from feedstack.cli.main import app
from feedstack.world import WorldConfig
from tests.factories import world_project

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def proj(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("monitor")
    return world_project(root, WorldConfig(users=3000, articles=300, days=0.25, seed=5))


def test_drift_on_the_project_log_with_a_dry_run_retrain(proj: Path) -> None:
    code, out, err = run(
        "monitor",
        "drift",
        "-p",
        str(proj),
        "--live-minutes",
        "60",
        "--reference-hours",
        "4",
        "--retrain",
        "--json",
    )
    assert code == 0, err
    doc = orjson.loads(out)
    feats = {f["feature"]: f for f in doc["features"]}
    assert set(feats) == {"click_topic", "click_position", "dwell_ms"}
    assert feats["click_topic"]["kind"] == "categorical"
    assert feats["dwell_ms"]["ks_p_value"] is not None
    assert doc["retrain"]["dry_run"] is True and doc["retrain"]["ran"] is False
    assert doc["thresholds"]["kl_alert"] == 0.05


def test_drift_writes_gauges_for_the_textfile_collector(proj: Path, tmp_path: Path) -> None:
    prom = tmp_path / "drift.prom"
    code, _, err = run("monitor", "drift", "-p", str(proj), "--metrics-file", str(prom))
    assert code == 0, err
    text = prom.read_text()
    assert 'feedstack_drift_kl_divergence{feature="click_topic"}' in text
    assert 'feedstack_drift_ks_p_value{feature="dwell_ms"}' in text


def test_drift_between_two_parquet_files(tmp_path: Path, proj: Path) -> None:
    rng = np.random.default_rng(0)
    ref = pa.table({"x": rng.normal(0, 1, 5000), "topic": rng.choice(["a", "b"], 5000)})
    live = pa.table({"x": rng.normal(1.5, 1, 1000), "topic": rng.choice(["a", "b"], 1000)})
    pq.write_table(ref, tmp_path / "ref.parquet")
    pq.write_table(live, tmp_path / "live.parquet")
    code, out, err = run(
        "monitor",
        "drift",
        "-p",
        str(proj),
        "--reference",
        str(tmp_path / "ref.parquet"),
        "--live",
        str(tmp_path / "live.parquet"),
        "--json",
    )
    assert code == 0, err
    assert orjson.loads(out)["drifted"] == ["x"]
    assert run("monitor", "drift", "-p", str(proj), "--reference", "r.parquet")[0] == 2


def test_kpi_per_model_version(proj: Path) -> None:
    code, out, err = run(
        "monitor", "kpi", "-p", str(proj), "--arms", "world-logger-v1=control", "--json"
    )
    assert code == 0, err
    doc = orjson.loads(out)
    (row,) = doc["by_model_version"]
    assert row["group"] == "world-logger-v1" and row["requests"] > 100
    assert 0 < row["ctr_ci95"][0] < row["ctr"] < row["ctr_ci95"][1] < 1
    assert doc["by_arm"][0]["group"] == "control"
    assert run("monitor", "kpi", "-p", str(proj), "--arms", "nonsense")[0] == 2


def test_rules_written_and_checked(tmp_path: Path, proj: Path) -> None:
    code, out, err = run(
        "monitor", "rules", "-p", str(proj), "--out", str(tmp_path / "m"), "--json"
    )
    assert code == 0, err
    doc = orjson.loads(out)
    assert sorted(Path(p).name for p in doc["files"].values()) == [
        "dashboard.json",
        "rules.yml",
        "rules_test.yml",
    ]
    if isinstance(doc["promtool"], dict):
        assert doc["promtool"]["check"]["ok"] and doc["promtool"]["test"]["ok"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_slo_scrapes_a_live_metrics_endpoint(proj: Path) -> None:
    from prometheus_client import start_http_server

    from feedstack.monitor.metrics import ServingMetrics

    m = ServingMetrics()
    for i in range(1000):
        m.request_seconds.labels("feed", "http").observe(0.2 if i < 30 else 0.01)
        m.requests.labels("feed", "http", "5xx" if i < 2 else "2xx").inc()
    port = _free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=m.registry)
    try:
        code, out, err = run(
            "monitor",
            "slo",
            "-p",
            str(proj),
            "--url",
            f"http://127.0.0.1:{port}/metrics",
            "--samples",
            "1",
            "--json",
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert code == 0, err
    avail, latency = orjson.loads(out)["slos"]
    assert avail["observed"]["bad"] == 2 and avail["observed"]["total"] == 1000
    # 0.2 % bad of a 0.1 % budget: burn 2, budget overspent (remaining -1)
    assert avail["burn_rates"]["1h"] == pytest.approx(2.0)
    assert avail["budget_remaining"] == pytest.approx(-1.0)
    assert latency["observed"]["bad"] == 30 and latency["burn_rates"]["5m"] == pytest.approx(0.6)
    assert avail["conditions"][0]["complete"] is False  # one scrape: no history
    assert run("monitor", "slo", "-p", str(proj))[0] == 2  # neither --url nor --prometheus


def test_scenario_records_a_drift_measurement(proj: Path) -> None:
    code, out, err = run("monitor", "scenario", "-p", str(proj), "--json")
    assert code == 0, err
    doc = orjson.loads(out)
    assert doc["false_alarms"] == {"drift": 0, "p99_latency": 0, "latency_burn": 0}
    assert doc["detected_after_min"]["drift:any"] <= 5
    assert list((proj / "measurements").glob("drift-*.json"))


def test_slo_against_a_real_feedstack_server(tmp_path: Path) -> None:
    """`feedstack serve` (synthetic service) exports what the SLO scraper reads."""
    import os

    import httpx

    from feedstack.bench.serve import ServerProcess, wait_ready
    from feedstack.core.spec import write_default_spec

    write_default_spec(tmp_path)
    server = ServerProcess(
        ["serve", "--service", "synthetic", "-p", str(tmp_path), "--port", "0",
         "--grpc-port", "0", "--json"],
        dict(os.environ, FEEDSTACK_API_KEYS="slo-key:feeds"),
    )  # fmt: skip
    try:
        addr = server.addresses(60.0)
        wait_ready(addr["http"], 60.0)
        h = {"x-api-key": "slo-key"}
        with httpx.Client(base_url=addr["http"], timeout=10, headers=h) as http:
            for i in range(40):
                assert http.get(f"/v1/feed/u{i}", params={"k": 5}).status_code == 200
        code, out, err = run(
            "monitor",
            "slo",
            "-p",
            str(tmp_path),
            "--url",
            f"{addr['http']}/metrics",
            "--samples",
            "1",
            "--json",
        )
    finally:
        server.stop()
    assert code == 0, err
    avail, latency = orjson.loads(out)["slos"]
    assert avail["observed"]["total"] == 40 and avail["observed"]["bad"] == 0
    assert latency["observed"]["total"] == 40
    assert avail["budget_remaining"] == 1.0
