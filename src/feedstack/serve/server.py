"""One serving process: the HTTP API on uvicorn and the gRPC API on grpcio, over one service.

``run_server`` binds both ports first (so port 0 works and the bound addresses can be printed
before traffic arrives), starts gRPC, flips its health to SERVING when the service is ready, then
runs uvicorn on the main thread until SIGTERM or SIGINT. Shutdown is graceful: uvicorn stops
accepting and finishes in-flight requests, gRPC is marked NOT_SERVING and given ``grace_s`` to
finish its calls, and the function returns (exit code 0).
"""

from __future__ import annotations

import gc
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from feedstack.monitor.metrics import ServingMetrics
from feedstack.serve.grpc_server import create_grpc_server, set_serving
from feedstack.serve.http import FEED_THREADS, create_app
from feedstack.serve.security import Guard
from feedstack.serve.types import FeedService

GRACE_S = 5.0
READY_POLL_S = 1.0
BACKLOG = 2048  # loopback load tests open many connections at once


@dataclass(frozen=True)
class Bound:
    host: str
    http_port: int
    grpc_port: int

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "http": f"http://{self.host}:{self.http_port}",
            "grpc": f"{self.host}:{self.grpc_port}",
        }


def bind_http(host: str, port: int, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """A TCP socket bound to ``(host, port)``. With ``reuse_port`` (SO_REUSEPORT) several
    processes bind the same port and the kernel spreads new connections over their listening
    sockets; a socket that is bound but not listening (``listen=False``: the supervisor's port
    reservation) receives none."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if listen:
        sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def run_server(
    service: FeedService,
    guard: Guard,
    metrics: ServingMetrics,
    host: str,
    http_port: int,
    grpc_port: int,
    on_ready: Callable[[Bound], None] = lambda bound: None,
    feed_threads: int = FEED_THREADS,
    grace_s: float = GRACE_S,
    reuse_port: bool = False,
    project: Path | None = None,
) -> Bound:
    """Serve until SIGTERM/SIGINT; returns the addresses it served on. ``reuse_port``: one of
    several worker processes on the same ports (serve/supervisor.py)."""
    sock = bind_http(host, http_port, reuse_port)
    grpc_host = f"[{host}]" if ":" in host else host
    grpc_server, bound_grpc, health = create_grpc_server(
        service, guard, metrics, f"{grpc_host}:{grpc_port}", reuse_port=reuse_port
    )
    bound = Bound(host, sock.getsockname()[1], bound_grpc)
    app = create_app(
        service, guard, metrics, feed_threads=feed_threads, project=project, console_sampling=True
    )
    config = uvicorn.Config(
        app,
        http="httptools",
        loop="uvloop",
        lifespan="off",
        access_log=False,
        log_level="warning",
        backlog=BACKLOG,
        timeout_graceful_shutdown=int(grace_s),
    )
    server = uvicorn.Server(config)
    received: list[int] = []

    def _note(sig: int, frame: FrameType | None) -> None:
        # uvicorn re-raises the signal it shut down for once it restores the handlers; this
        # handler takes it so that the process goes on to stop gRPC and exit 0.
        received.append(sig)

    previous = {s: signal.signal(s, _note) for s in (signal.SIGTERM, signal.SIGINT)}
    stopping = threading.Event()

    def _follow_readiness() -> None:
        # gRPC health mirrors /readyz: a service that loads its model later turns SERVING then.
        while not stopping.is_set():
            try:
                ok = service.ready()[0]
            except Exception:
                ok = False
            set_serving(health, ok)
            stopping.wait(READY_POLL_S)

    # Everything built so far (models, caches, item features: ~250k objects for a 3,000-user
    # project) lives as long as the process; freezing it keeps the collector from rescanning it
    # in every full collection, which took 70 ms on an idle core and surfaced as 100-170 ms p99
    # spikes under load (measured with gc.collect(2) after build_service; 0.0 ms once frozen).
    gc.collect()
    gc.freeze()
    grpc_server.start()
    set_serving(health, service.ready()[0])
    follower = threading.Thread(target=_follow_readiness, name="grpc-health", daemon=True)
    follower.start()
    try:
        on_ready(bound)
        server.run(sockets=[sock])
    finally:
        stopping.set()
        follower.join(timeout=READY_POLL_S + 1.0)
        set_serving(health, False)
        grpc_server.stop(grace_s).wait()
        sock.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return bound
