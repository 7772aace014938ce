"""A real Prometheus (Debian's ``prometheus``): the time-scaled rules profile, the injected
slowdown and drift firing real alerts read back from /api/v1/alerts, and ``monitor up``/``down``
scraping a serving process's metrics. Skipped without the binary, except under CI=true."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import orjson
import pytest
import yaml
from prometheus_client import start_http_server
from typer.testing import CliRunner

from feedstack.cli.main import app
from feedstack.core.spec import Spec, write_default_spec
from feedstack.monitor.live import EXPECTED, LiveConfig, run_live_scenario
from feedstack.monitor.metrics import ServingMetrics
from feedstack.monitor.prometheus import (
    COST_ALERT,
    free_port,
    is_prometheus,
    prometheus_path,
    scaled_rules,
)
from feedstack.monitor.rules import rules_document
from feedstack.monitor.scenario import ScenarioConfig

runner = CliRunner()


def _need_prometheus() -> None:
    if prometheus_path() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus is not installed (tools/debian-packages installs it)")
        pytest.skip("prometheus is not installed (Debian: apt-get install prometheus)")


def _rule(doc: dict, name: str) -> dict:
    return next(r for g in doc["groups"] for r in g["rules"] if r.get("alert") == name)


def test_scaled_rules_shrink_every_range_and_for(tmp_path: Path) -> None:
    doc = rules_document(Spec())
    fast = scaled_rules(doc, 1 / 60, min_range_s=4)
    p99 = _rule(fast, "FeedstackLatencyP99High")
    assert "[5s]" in p99["expr"] and "[5m]" not in p99["expr"] and p99["for"] == "2s"
    assert "[7d]" not in _rule(fast, "FeedstackCtrDrop")["expr"]
    assert "[10080s]" in _rule(fast, "FeedstackCtrDrop")["expr"]  # 7 d / 60
    cost = _rule(fast, COST_ALERT)["expr"]
    assert cost.startswith("(") and ") * 0.01666666667 > " in cost  # rates per simulated second
    assert _rule(doc, "FeedstackLatencyP99High")["for"] == "2m"  # the input is untouched
    if shutil.which("promtool"):
        path = tmp_path / "fast.yml"
        path.write_text(yaml.safe_dump(fast))
        proc = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
def test_injected_slowdown_and_drift_fire_real_alerts(tmp_path: Path) -> None:
    _need_prometheus()
    cfg = ScenarioConfig(users=20_000, articles=1_000, steady_minutes=30)
    live = LiveConfig(live_steady_minutes=6, settle_s=20.0)
    scenario, prom = run_live_scenario(Spec(), tmp_path / "prom", cfg, live)
    assert prom["targets"] and all(t["health"] == "up" for t in prom["targets"])
    assert prom["expected_fired"], prom
    assert prom["false_alarms"] == []
    for name in EXPECTED:
        s = prom["first_firing_s"][name]
        assert s is not None and 0 <= s <= cfg.after_minutes * live.tick_s + live.settle_s
    drifted = {a.get("feature") for a in prom["alerts"] if a["name"] == "FeedstackFeatureDrift"}
    assert "click_topic" in drifted and "click_position" not in drifted  # the control is quiet
    assert scenario.detected_after_min["p99_latency"] is not None
    assert not list((tmp_path / "prom").glob("tsdb-*"))  # storage removed on stop


def test_without_the_binary_the_scenario_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    cfg = ScenarioConfig(users=5_000, articles=500, steady_minutes=5, after_minutes=3)
    scenario, prom = run_live_scenario(Spec(), tmp_path / "prom", cfg)
    assert "apt-get install prometheus" in prom["skipped"]
    assert scenario.steady_minutes == 5  # the rest still ran


@pytest.mark.slow
def test_monitor_up_scrapes_the_serving_port_and_down_stops_it(tmp_path: Path) -> None:
    _need_prometheus()
    project = tmp_path / "p"
    write_default_spec(project)
    metrics = ServingMetrics()
    metrics.requests.labels("feed", "http", "2xx").inc(7)
    serve_port = free_port()
    httpd, _ = start_http_server(serve_port, addr="127.0.0.1", registry=metrics.registry)
    doc = yaml.safe_load((project / "feedstack.yaml").read_text())
    doc.setdefault("api", {})["http_port"] = serve_port
    (project / "feedstack.yaml").write_text(yaml.safe_dump(doc))
    prom_port = free_port()
    args = ["monitor", "up", "-p", str(project), "--port", str(prom_port)]
    try:
        result = runner.invoke(app, [*args, "--scrape-interval", "0.5", "--json"])
        assert result.exit_code == 0, result.stderr
        state = orjson.loads(result.stdout)
        assert is_prometheus(state["pid"])
        again = runner.invoke(app, [*args, "--json"])
        assert again.exit_code == 2 and "already running" in again.stderr
        url = state["url"]
        deadline = time.monotonic() + 30
        value = None
        while time.monotonic() < deadline and value is None:
            q = httpx.get(f"{url}/api/v1/query", params={"query": "feedstack_requests_total"})
            res = q.json()["data"]["result"]
            value = float(res[0]["value"][1]) if res else None
            time.sleep(0.5)
        assert value == 7.0
        rules = httpx.get(f"{url}/api/v1/rules").json()["data"]["groups"]
        assert {g["name"] for g in rules} == {"feedstack-slo-recording", "feedstack-alerts"}
    finally:
        down = runner.invoke(app, ["monitor", "down", "-p", str(project), "--json"])
        httpd.shutdown()
        httpd.server_close()
    assert down.exit_code == 0 and orjson.loads(down.stdout)["stopped"] is True
    assert not is_prometheus(state["pid"])
    assert not list((project / "monitor" / "prometheus").glob("tsdb-*"))


def test_monitor_up_names_a_bad_target_and_down_without_up_is_a_no_op(tmp_path: Path) -> None:
    project = tmp_path / "p"
    write_default_spec(project)
    bad = runner.invoke(app, ["monitor", "up", "-p", str(project), "--target", "nohost"])
    assert bad.exit_code == 2 and "--target" in bad.stderr and "nohost" in bad.stderr
    assert not (project / "monitor" / "prometheus" / "state.json").exists()
    down = runner.invoke(app, ["monitor", "down", "-p", str(project), "--json"])
    assert down.exit_code == 0 and orjson.loads(down.stdout)["stopped"] is False
