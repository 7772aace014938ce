"""``feedstack serve --workers N``: N real processes on one pair of ports (SO_REUSEPORT), one
metrics view over all of them, a dead worker replaced, graceful stop, no orphans, and events
posted through every worker stored exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.multiprocess import MultiProcessCollector

from feedstack.core.spec import load_spec, write_default_spec
from feedstack.serve.grpc_gen import feed_pb2, feed_pb2_grpc
from feedstack.storage.eventlog import open_event_log
from tests.factories import click

ENTRY = "from feedstack.cli.main import main; main()"
KEY = "workers-test-key"  # feeds and events (a bare key)
AUTH = {"x-api-key": KEY}


class Replica:
    """``feedstack serve --workers N --json`` in a child process; stderr collected."""

    def __init__(self, args: list[str]) -> None:
        env = {**os.environ, "FEEDSTACK_API_KEYS": KEY, "OPENBLAS_NUM_THREADS": "1"}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ENTRY, "serve", "--port", "0", "--grpc-port", "0", "--json",
             *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        assert self.proc.stderr is not None and self.proc.stdout is not None
        self.err: list[bytes] = []
        stream = self.proc.stderr
        self._drain = threading.Thread(target=lambda: self.err.extend(stream), daemon=True)
        self._drain.start()
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            raise AssertionError(f"serve exited: {self.stderr()}")
        self.info: dict[str, Any] = orjson.loads(line)

    def stderr(self) -> str:
        return b"".join(self.err).decode(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._drain.join(5)
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) no longer serves.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def _feeds_by_pid(metrics_dir: str, pids: list[int]) -> dict[int, float]:
    """Feed requests counted in each worker's own metrics file."""
    out = {}
    for pid in pids:
        total = 0.0
        for metric in MultiProcessCollector.merge([f"{metrics_dir}/counter_{pid}.db"]):
            for s in metric.samples:
                if s.name == "feedstack_requests_total" and s.labels.get("endpoint") == "feed":
                    total += s.value
        out[pid] = total
    return out


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[Replica]:
    r = Replica(["--service", "synthetic", "-p", str(tmp_path), "--workers", "2"])
    yield r
    r.stop()


@pytest.mark.slow
def test_workers_share_the_ports_and_one_metrics_view(replica: Replica) -> None:
    info = replica.info
    assert info["workers"] == 2 and len(set(info["pids"])) == 2
    n = 60
    for i in range(n):  # a new connection each: the kernel spreads them over the workers
        with httpx.Client(base_url=info["http"], timeout=10, headers=AUTH) as http:
            assert http.get(f"/v1/feed/u{i}", params={"k": 3}).status_code == 200
    by_pid = _feeds_by_pid(info["metrics_dir"], info["pids"])
    assert sum(by_pid.values()) == n
    assert all(v > 0 for v in by_pid.values()), by_pid  # both served (P(all on one) = 2^-59)
    with httpx.Client(base_url=info["http"], timeout=10) as http:
        text = http.get("/metrics").text  # whichever worker answers: the sum over both
        assert http.get("/readyz").status_code == 200
    assert f'feedstack_requests_total{{code="2xx",endpoint="feed",protocol="http"}} {n}.0' in text
    # gRPC on the same port: separate connections (a local subchannel pool per channel).
    for i in range(6):
        opts = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.insecure_channel(info["grpc"], options=opts) as ch:
            health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            got = feed_pb2_grpc.FeedStub(ch).GetFeed(
                feed_pb2.FeedRequest(user_id=f"u{i}", k=4), metadata=(("x-api-key", KEY),)
            )
            assert len(got.items) == 4
    pids = info["pids"]
    assert replica.stop() == 0, replica.stderr()[-800:]
    assert _wait_gone(pids, 5.0) == []
    assert not Path(info["metrics_dir"]).exists()  # the supervisor's own folder is removed
    assert "Traceback" not in replica.stderr() and "Fatal" not in replica.stderr()


@pytest.mark.slow
def test_a_killed_worker_is_replaced(replica: Replica) -> None:
    info = replica.info
    victim = info["pids"][0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while "restarting" not in replica.stderr() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert f"pid {victim}" in replica.stderr()
    # The survivor serves meanwhile, the replacement once it has bound: no request fails.
    for i in range(20):
        with httpx.Client(base_url=info["http"], timeout=10, headers=AUTH) as http:
            assert http.get(f"/v1/feed/u{i}", params={"k": 2}).status_code == 200
    assert replica.stop() == 0


@pytest.mark.slow
def test_workers_exit_when_the_supervisor_is_killed(replica: Replica) -> None:
    pids = replica.info["pids"]
    os.kill(replica.proc.pid, signal.SIGKILL)  # no chance to stop its workers
    replica.proc.wait(10)
    assert _wait_gone(pids, 20.0) == [], "orphaned workers kept serving"


@pytest.mark.slow
def test_events_posted_through_every_worker_are_stored_once(tmp_path: Path) -> None:
    """Several clients post the same and their own events, each on new connections, so posts
    land on both workers at once: every distinct event is in the log exactly once and the
    acknowledged counts add up."""
    project = tmp_path / "p"
    write_default_spec(project)  # no model needed: the ingest path is the same
    # Both workers open the project's stores (log, candidate cache, dead letters) at once.
    replica = Replica(["-p", str(project), "--workers", "2"])
    clients, shared, own = 4, 40, 40
    counts: list[dict[str, int]] = []
    lock = threading.Lock()

    def post(c: int) -> None:
        docs = [click(i, user="shared") for i in range(shared)]
        docs += [click(10_000 * (c + 1) + i, user=f"c{c}") for i in range(own)]
        for start in range(0, len(docs), 5):
            with httpx.Client(base_url=replica.info["http"], timeout=30) as http:
                r = http.post(
                    "/v1/events",
                    content=orjson.dumps(docs[start : start + 5]),
                    headers={"x-api-key": KEY},
                )
            assert r.status_code == 202, r.text
            with lock:
                counts.append(r.json())

    try:
        threads = [threading.Thread(target=post, args=(c,)) for c in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        assert replica.stop() == 0, replica.stderr()[-800:]
    distinct = shared + clients * own
    assert sum(c["accepted"] for c in counts) == distinct
    assert sum(c["duplicates"] for c in counts) == (clients - 1) * shared
    log = open_event_log(load_spec(project).backends.event_log, project)
    try:
        ids = [orjson.loads(p)["event_id"] for _, p in log.read_raw(None, 10_000)]
    finally:
        log.close()
    assert len(ids) == len(set(ids)) == distinct
