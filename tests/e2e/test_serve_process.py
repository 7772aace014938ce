"""A real ``feedstack serve`` process (both APIs, SIGTERM exits 0) and a tiny ``bench serve``."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
import orjson
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from typer.testing import CliRunner

from feedstack.bench.serve import run_serve_bench
from feedstack.cli.main import app
from feedstack.serve.grpc_gen import feed_pb2, feed_pb2_grpc
from tests.factories import click

ENTRY = "from feedstack.cli.main import main; main()"


def test_serve_process_answers_both_protocols_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "FEEDSTACK_API_KEYS": "smoke-key"}
    proc = subprocess.Popen(
        [sys.executable, "-c", ENTRY, "serve", "--service", "synthetic", "-p", str(tmp_path),
         "--port", "0", "--grpc-port", "0", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        info = orjson.loads(proc.stdout.readline())
        assert {"http", "grpc", "http_port", "grpc_port"} <= set(info)
        with httpx.Client(base_url=info["http"], timeout=10) as http:
            assert http.get("/v1/feed/u7").status_code == 401  # feeds need a key
            h = {"x-api-key": "smoke-key"}
            feed = http.get("/v1/feed/u7", params={"k": 5}, headers=h).json()
            assert len(feed["items"]) == 5
            r = http.post(
                "/v1/events", content=orjson.dumps([click(1)]), headers={"x-api-key": "smoke-key"}
            )
            assert r.status_code == 202 and r.json()["accepted"] == 1
            assert http.get("/readyz").status_code == 200
        with grpc.insecure_channel(info["grpc"]) as ch:
            health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            got = feed_pb2_grpc.FeedStub(ch).GetFeed(
                feed_pb2.FeedRequest(user_id="u7", k=5), metadata=(("x-api-key", "smoke-key"),)
            )
            assert [i.item_id for i in got.items] == [i["item_id"] for i in feed["items"]]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode(errors="replace")[-500:]
    assert b"Traceback" not in err


def test_bench_serve_prints_the_keys_and_records_them(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["bench", "serve", "--service", "synthetic", "-p", str(tmp_path), "--rate", "100",
         "--duration", "1", "--concurrency", "4", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = orjson.loads(result.stdout)
    assert {"rps", "p50_ms", "p95_ms", "p99_ms", "errors", "floor_rps"} <= set(doc)
    assert doc["errors"] == 0 and doc["floor_rps"] > 0 and doc["server_exit_code"] == 0
    assert doc["feed"]["requests"] == 100  # open loop: exactly rate x duration were sent
    assert doc["p50_ms"] <= doc["p95_ms"] <= doc["p99_ms"]
    (rec,) = (tmp_path / "measurements").glob("serve-*.json")
    saved = orjson.loads(rec.read_bytes())
    assert saved["kind"] == "serve" and saved["result"]["protocol"] == "http"


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (apt-get install wrk)")
def test_bench_serve_saturation_with_wrk() -> None:
    doc = run_serve_bench(
        None, service="synthetic", duration_s=1.0, warmup_s=0.0, concurrency=4, loadgen="wrk"
    )
    assert doc["loadgen"] == "wrk" and doc["mode"] == "saturate"
    assert doc["errors"] == 0 and doc["rps"] > 0 and doc["floor_rps"] > 0
    assert doc["p50_ms"] <= doc["p99_ms"]
