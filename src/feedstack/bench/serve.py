"""``feedstack bench serve``: the serving process under load, against its own floor.

One run: start ``feedstack serve`` (a child process, both APIs on free loopback ports), wait for
``/readyz``, then drive it from a *separate* load-generator process (bench/loadgen.py) twice with
the same harness:

1. the floor: the same framework answering a constant (HTTP ``GET /v1/ping``, gRPC
   ``grpc.health.v1.Health/Check``), closed loop: the most this transport can do on this machine
   in this run (``floor_rps``);
   With a rate, the bare endpoint is also driven open loop at that rate
   (``floor_p99_ms_at_rate``: what the machine adds to any request in this run);
2. the feed: ``GET /v1/feed/{user}?k=`` or ``Feed/GetFeed`` with the project's user mix, open loop
   at ``rate`` (latency from each request's scheduled time) or, without a rate, closed loop to
   saturation.

The server gets SIGTERM at the end (a graceful shutdown is part of the run). Both processes share
the machine's cores with each other (and with anything else running): compare ``rps`` with
``floor_rps`` of the same run rather than across runs.
"""

from __future__ import annotations

import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from feedstack.bench.machine import process_cpu_s
from feedstack.core.errors import BackendUnavailable, InputError
from feedstack.core.spec import Api
from feedstack.serve.auth import api_key_entry

READY_TIMEOUT_S = 300.0  # the pipeline replays the log into its item cache before it is ready
MAX_USERS = 200_000
FLOOR_MAX_S = 10.0
PROTOCOLS = ("http", "grpc")
# auto: wrk for HTTP saturation runs when installed (both the floor and the feed, same harness),
# else the built-in generator; builtin: always the built-in one.
LOADGENS = ("auto", "builtin", "wrk")


def project_users(project: Path, limit: int = MAX_USERS) -> list[str]:
    """User ids seen in the project's event log (the population the load is drawn from)."""
    from feedstack.core.spec import load_spec
    from feedstack.storage.eventlog import open_event_log

    spec = load_spec(project)
    log = open_event_log(spec.backends.event_log, project)
    users: dict[str, None] = {}
    after: str | None = None
    try:
        while len(users) < limit:
            batch = log.read_raw(after, 20_000)
            if not batch:
                break
            for _, raw in batch:
                uid = orjson.loads(raw).get("user_id")
                if isinstance(uid, str):
                    users[uid] = None
            after = batch[-1][0]
    finally:
        log.close()
    return list(users)[:limit]


def _read_line(stream: Any, timeout_s: float) -> bytes:
    out: queue.Queue[bytes] = queue.Queue()
    threading.Thread(target=lambda: out.put(stream.readline()), daemon=True).start()
    try:
        return out.get(timeout=timeout_s)
    except queue.Empty:
        return b""


class ServerProcess:
    """``feedstack serve`` in a child process on free ports; stopped with SIGTERM."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from feedstack.cli.main import main; main()", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self._stderr: list[bytes] = []
        assert self.proc.stderr is not None
        err = self.proc.stderr
        self._drain = threading.Thread(target=lambda: self._stderr.extend(err), daemon=True)
        self._drain.start()

    def addresses(self, timeout_s: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = _read_line(self.proc.stdout, timeout_s)
        if not line:
            self.stop()
            raise BackendUnavailable(f"feedstack serve did not start: {self.stderr_tail()}")
        info: dict[str, Any] = orjson.loads(line)
        return info

    def stderr_tail(self, n: int = 5) -> str:
        text = b"".join(self._stderr).decode(errors="replace").strip().splitlines()
        return " | ".join(text[-n:]) or "(no output)"

    def stop(self, timeout_s: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._drain.join(timeout=5.0)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return self.proc.returncode


def wait_ready(http_url: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] = {}
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            try:
                r = client.get(f"{http_url}/readyz")
                last = r.json()
                if r.status_code == 200:
                    return last
            except httpx.HTTPError as exc:
                last = {"error": type(exc).__name__}
            time.sleep(0.2)
    raise BackendUnavailable(f"server not ready after {timeout_s:.0f} s: {last}")


def bench_key(project: Path | None, *scopes: str) -> tuple[str, dict[str, str]]:
    """A fresh API key (scopes: feeds unless given) and the environment for a server that
    accepts it: feeds need a key (``api.public_feeds`` is off by default), and the load a
    benchmark measures is the load a client with a key sends."""
    keys_env = Api().keys_env
    if project is not None and (project / "feedstack.yaml").exists():
        from feedstack.core.spec import load_spec

        keys_env = load_spec(project).api.keys_env
    key = secrets.token_hex(16)
    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        keys_env: api_key_entry(key, *(scopes or ("feeds",))),
    }
    return key, env


def run_loadgen(cfg: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """One load-generator run in its own process."""
    proc = subprocess.run(
        [sys.executable, "-m", "feedstack.bench.loadgen", orjson.dumps(cfg).decode()],
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise BackendUnavailable(f"load generator failed: {' | '.join(tail)}")
    result: dict[str, Any] = orjson.loads(proc.stdout)
    return result


def run_serve_bench(
    project: Path | None,
    *,
    protocol: str = "http",
    rate: float | None = None,
    duration_s: float = 10.0,
    metrics: bool = True,
    service: str = "pipeline",
    synthetic_cpu_ms: float = 0.0,
    concurrency: int = 32,
    connections: int = 64,
    warmup_s: float = 2.0,
    seed: int = 0,
    loadgen: str = "auto",
) -> dict[str, Any]:
    from feedstack.bench.wrk import run_wrk, wrk_path

    if protocol not in PROTOCOLS:
        raise InputError(f"--protocol must be http or grpc, got {protocol!r}")
    if loadgen not in LOADGENS:
        raise InputError(f"--loadgen must be one of {', '.join(LOADGENS)}, got {loadgen!r}")
    wrk_fits = protocol == "http" and rate is None
    if loadgen == "wrk" and not (wrk_fits and wrk_path()):
        raise InputError(
            "--loadgen wrk needs wrk on PATH, --protocol http and no --rate (wrk is closed-loop)"
        )
    use_wrk = loadgen == "wrk" or (loadgen == "auto" and wrk_fits and wrk_path() is not None)
    engine = "wrk" if use_wrk else "builtin-asyncio" if protocol == "http" else "grpc.aio"
    drive = run_wrk if use_wrk else run_loadgen
    if rate is not None and rate <= 0:
        raise InputError(f"--rate must be > 0, got {rate}")
    users: list[str] = []
    cache_backend = "none"
    args = ["serve", "--port", "0", "--grpc-port", "0", "--json", "--service", service]
    if project is not None:
        from feedstack.core.spec import load_spec

        args += ["--project", str(project)]
        users = project_users(project)
        cache_backend = load_spec(project).backends.candidate_cache.split("://", 1)[0]
    elif service == "pipeline":
        raise InputError("the pipeline service needs --project (or use --service synthetic)")
    if service == "synthetic":
        args += ["--synthetic-cpu-ms", str(synthetic_cpu_ms)]
        cache_backend = "synthetic"
    if not metrics:
        args.append("--no-metrics")
    key, env = bench_key(project)
    server = ServerProcess(args, env)
    try:
        addr = server.addresses(READY_TIMEOUT_S)
        ready = wait_ready(addr["http"], READY_TIMEOUT_S)
        port = addr["http_port"] if protocol == "http" else addr["grpc_port"]
        base = {
            "host": addr["host"],
            "port": port,
            "protocol": protocol,
            "concurrency": concurrency,
            "connections": connections,
            "warmup_s": warmup_s,
            "seed": seed,
            "api_key": key,
        }
        budget = duration_s + warmup_s + 60.0
        floor = drive(
            {**base, "target": "bare", "duration_s": min(duration_s, FLOOR_MAX_S)}, budget
        )
        floor_at_rate = None
        if rate is not None:
            # The bare endpoint at the same offered rate: the latency this machine adds anyway
            # (scheduling, the generator, other processes) in this run.
            floor_at_rate = run_loadgen(
                {**base, "target": "bare", "duration_s": duration_s, "rate": rate}, budget
            )
        feed_cfg = {**base, "target": "feed", "duration_s": duration_s, "users": users}
        if rate is not None:
            feed_cfg["rate"] = rate
        # The server's CPU over the feed run: what this load cost in cores (the planner's
        # requests/s per core comes from here, not from assuming one core per process).
        cpu0, began = process_cpu_s(server.proc.pid), time.monotonic()
        feed = drive(feed_cfg, budget)
        elapsed_s = time.monotonic() - began
        cpu1 = process_cpu_s(server.proc.pid)
    finally:
        exit_code = server.stop()
    return {
        "rps": feed["rps"],
        "p50_ms": feed["p50_ms"],
        "p95_ms": feed["p95_ms"],
        "p99_ms": feed["p99_ms"],
        "errors": feed["errors"],
        "floor_rps": floor["rps"],
        "rps_over_floor": round(feed["rps"] / floor["rps"], 3) if floor["rps"] else None,
        "floor_p99_ms_at_rate": floor_at_rate["p99_ms"] if floor_at_rate else None,
        "protocol": protocol,
        "rate": rate,
        "mode": feed["mode"],
        "duration_s": duration_s,
        "candidate_cache": cache_backend,
        "service": service,
        "metrics": metrics,
        "users": len(users),
        "loadgen": engine,
        "feed": feed,
        "floor": floor,
        "floor_at_rate": floor_at_rate,
        "ready": ready,
        "server_exit_code": exit_code,
        "elapsed_s": round(elapsed_s, 3),
        "server_cpu_s": round(cpu1 - cpu0, 3) if cpu0 is not None and cpu1 is not None else None,
    }
