"""The load balancer of `bench replicas`: the real HAProxy in front of two tiny HTTP servers."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from feedstack.bench.replicas import Balancer, _stats, free_port, haproxy_config, haproxy_path


class _Replica(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = str(self.server.server_address[1]).encode()  # which replica answered
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def replicas() -> Iterator[list[int]]:
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _Replica) for _ in range(2)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield [s.server_address[1] for s in servers]
    for s in servers:
        s.shutdown()
        s.server_close()


def test_haproxy_shards_feed_requests_by_region(replicas: list[int], tmp_path: Path) -> None:
    if haproxy_path() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("haproxy is required under CI (tools/debian-packages)")
        pytest.skip("haproxy is not installed (Debian package haproxy)")
    port, stats = free_port(), free_port()
    lb = Balancer(haproxy_config(port, stats, replicas), tmp_path)  # haproxy -c checks it first
    try:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(timeout=5.0) as client:
            for _ in range(100):
                try:
                    client.get(f"{url}/readyz")
                    break
                except httpx.HTTPError:
                    threading.Event().wait(0.05)
            regions = [f"region-{i}" for i in range(12)]
            first = {r: client.get(f"{url}/v1/feed/u?k=3&region={r}").text for r in regions}
            # Every request of a region goes to the same replica; the regions use both.
            for _ in range(3):
                for r in regions:
                    assert client.get(f"{url}/v1/feed/u2?k=5&region={r}").text == first[r]
            assert set(first.values()) == {str(p) for p in replicas}
            # No region (an event post): round robin over both.
            seen = {client.get(f"{url}/v1/events").text for _ in range(4)}
            assert seen == {str(p) for p in replicas}
        counts = _stats(stats)
        assert set(counts) == {"r0", "r1"} and sum(counts.values()) >= 12 * 4 + 4
    finally:
        assert lb.stop() is not None
    assert lb.proc.poll() is not None
