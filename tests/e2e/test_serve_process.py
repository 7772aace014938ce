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
    feed = doc["feed"]
    assert feed["total_requests"] == 100  # open loop: exactly rate x duration were sent
    # 10 % of the requests posted the events of served feeds (the first few slots may come
    # before any feed was served: sent as feeds).
    assert feed["events"]["requests"] + feed["events_sent_as_feeds"] >= 1
    assert feed["events"]["errors"] == 0 and doc["event_share"] == 0.1
    assert doc["p50_ms"] <= doc["p95_ms"] <= doc["p99_ms"]
    assert doc["workers"] >= 1 and doc["server_cores"] > 0
    assert set(feed["lag_ms"]) == {"p50", "p95", "p99", "max"}
    (rec,) = (tmp_path / "measurements").glob("serve-*.json")
    saved = orjson.loads(rec.read_bytes())
    assert saved["kind"] == "serve" and saved["result"]["protocol"] == "http"


@pytest.mark.slow
def test_bench_serve_over_grpc_sends_keys_with_feeds_and_events() -> None:
    """The gRPC load generator authenticates every call: feeds need a key (the feeds scope)
    as much as event posts do (events), so any call without one would count as an error."""
    doc = run_serve_bench(
        None, service="synthetic", protocol="grpc", rate=100.0, duration_s=1.0, warmup_s=0.5,
        workers=1,
    )  # fmt: skip
    feed = doc["feed"]
    assert doc["errors"] == 0 and feed["ok"] > 0 and doc["floor_rps"] > 0
    assert feed["total_requests"] == 100
    assert feed["events"]["requests"] + feed["events_sent_as_feeds"] >= 1
    assert feed["events"]["errors"] == 0


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (apt-get install wrk)")
def test_bench_serve_saturation_with_wrk() -> None:
    doc = run_serve_bench(
        None,
        service="synthetic",
        duration_s=1.0,
        warmup_s=0.0,
        concurrency=4,
        loadgen="wrk",
        event_share=0.0,
    )
    assert doc["loadgen"] == "wrk" and doc["mode"] == "saturate"
    assert doc["errors"] == 0 and doc["rps"] > 0 and doc["floor_rps"] > 0
    assert doc["p50_ms"] <= doc["p99_ms"]


@pytest.mark.slow
def test_bench_soak_reports_latency_per_minute_and_memory_growth(tmp_path: Path) -> None:
    """A short soak of the real multi-process server (the synthetic service: the same
    supervisor, workers and transports) records per-minute latency and memory samples."""
    result = CliRunner().invoke(
        app,
        ["bench", "soak", "-p", str(tmp_path), "--service", "synthetic", "--rate", "40",
         "--duration", "10", "--settle", "0", "--workers", "2", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = orjson.loads(result.stdout)
    assert doc["workers"] == 2 and doc["errors"] == 0 and doc["server_exit_code"] == 0
    assert doc["feed"]["total_requests"] == 400
    assert len(doc["p99_ms_by_minute"]) == 1 and doc["windows"][0]["requests"] > 300
    assert len(doc["rss_mb_by_process"]) == 3  # the supervisor and both workers
    assert doc["rss_growth_mb_per_min_after_settle"] is not None
    assert {"meets_growth_target", "meets_p99_target", "lag_ms"} <= set(doc)
    (rec,) = (tmp_path / "measurements").glob("bench-soak-*.json")
    assert orjson.loads(rec.read_bytes())["kind"] == "bench-soak"
