"""``feedstack bench serve``: the server a user runs, under the traffic a user sends, against its
own floor.

One run: start ``feedstack serve`` (a child process: the supervisor and its ``--workers`` serving
processes, default one per core, both APIs on free loopback ports), wait for ``/readyz``, then
drive it from a *separate* load-generator process (bench/loadgen.py) twice with the same harness:

1. the floor: the same framework answering a constant (HTTP ``GET /v1/ping``, gRPC
   ``grpc.health.v1.Health/Check``), closed loop: the most this transport can do on this machine
   in this run (``floor_rps``);
   With a rate, the bare endpoint is also driven open loop at that rate
   (``floor_p99_ms_at_rate``: what the machine adds to any request in this run);
2. the feed: ``GET /v1/feed/{user}?k=`` or ``Feed/GetFeed`` with the project's user mix, open loop
   at ``rate`` (latency from each request's scheduled time) or, without a rate, closed loop to
   saturation; a share ``event_share`` of the requests POST the clicks and dwells of feeds
   served in the run, at the served log's time when the project serves as of its log
   (``serve.clock: log``).

Every request carries an API key made for the run (``API_KEYS`` keys with the feeds and events
scopes, taken in turn), as a front end's requests do: feeds need a key unless
``api.public_feeds``.

The server gets SIGTERM at the end (a graceful shutdown is part of the run). Its CPU is the sum
over the supervisor and every worker (``server_cpu_s``; ``server_cores`` = that over the run's
wall time): the planner's requests/s per core comes from here. Both processes share the
machine's cores with each other (and with anything else running): compare ``rps`` with
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

from feedstack.bench.machine import tree_cpu_s
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
EVENT_SHARE = 0.1
API_KEYS = 8  # made per run; the load generator rotates them (the limit is per key)
BENCH_SCOPES = ("feeds", "events")  # what a front end's key holds: it reads feeds, posts events


def project_users(project: Path, limit: int = MAX_USERS) -> list[str]:
    """User ids seen in the project's event log (the population the load is drawn from)."""
    return scan_log(project, limit)[0]


def scan_log(project: Path, limit: int = MAX_USERS) -> tuple[list[str], float | None]:
    """The users of the project's event log (up to ``limit``) and its newest event time."""
    from feedstack.core.spec import load_spec
    from feedstack.features.aggregator import event_seconds
    from feedstack.storage.eventlog import open_event_log

    spec = load_spec(project)
    log = open_event_log(spec.backends.event_log, project)
    users: dict[str, None] = {}
    newest = ""
    after: str | None = None
    try:
        while True:
            batch = log.read_raw(after, 20_000)
            if not batch:
                break
            for _, raw in batch:
                ev = orjson.loads(raw)
                uid = ev.get("user_id")
                if isinstance(uid, str) and len(users) < limit:
                    users[uid] = None
                t = ev.get("event_time")
                if isinstance(t, str) and t > newest:  # ISO times in UTC sort as strings
                    newest = t
            after = batch[-1][0]
    finally:
        log.close()
    return list(users), event_seconds(newest) if newest else None


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


def bench_keys(
    project: Path | None, n: int = API_KEYS, scopes: tuple[str, ...] = BENCH_SCOPES
) -> tuple[list[str], dict[str, str]]:
    """``n`` fresh API keys with ``scopes`` and the environment for a server that accepts them:
    feeds need a key (``api.public_feeds`` is off by default), events one with the events
    scope, and the load a benchmark measures is the load clients with keys send."""
    keys_env = Api().keys_env
    if project is not None and (project / "feedstack.yaml").exists():
        from feedstack.core.spec import load_spec

        keys_env = load_spec(project).api.keys_env
    keys = [secrets.token_hex(16) for _ in range(n)]
    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        keys_env: ",".join(api_key_entry(k, *scopes) for k in keys),
    }
    return keys, env


def run_loadgen(cfg: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """One load-generator run in its own process."""
    proc = subprocess.run(
        [sys.executable, "-m", "feedstack.bench.loadgen", "-"],
        input=orjson.dumps(cfg),  # on stdin: the bench project's users outgrow one argument
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
    workers: int | None = None,
    event_share: float = EVENT_SHARE,
) -> dict[str, Any]:
    from feedstack.bench.wrk import run_wrk, wrk_path

    if protocol not in PROTOCOLS:
        raise InputError(f"--protocol must be http or grpc, got {protocol!r}")
    if loadgen not in LOADGENS:
        raise InputError(f"--loadgen must be one of {', '.join(LOADGENS)}, got {loadgen!r}")
    if not 0.0 <= event_share < 1.0:
        raise InputError(f"--event-share must be in [0, 1), got {event_share}")
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    # wrk replays fixed GETs: it cannot post the events of the feeds it was served.
    wrk_fits = protocol == "http" and rate is None and event_share == 0
    if loadgen == "wrk" and not (wrk_fits and wrk_path()):
        raise InputError(
            "--loadgen wrk needs wrk on PATH, --protocol http, no --rate (wrk is closed-loop) "
            "and --event-share 0 (it replays fixed requests)"
        )
    use_wrk = loadgen == "wrk" or (loadgen == "auto" and wrk_fits and wrk_path() is not None)
    engine = "wrk" if use_wrk else "builtin-asyncio" if protocol == "http" else "grpc.aio"
    drive = run_wrk if use_wrk else run_loadgen
    if rate is not None and rate <= 0:
        raise InputError(f"--rate must be > 0, got {rate}")
    users: list[str] = []
    cache_backend = "none"
    sim_start_s: float | None = None
    args = ["serve", "--port", "0", "--grpc-port", "0", "--json", "--service", service]
    if workers is not None:
        args += ["--workers", str(workers)]
    if project is not None:
        from feedstack.core.spec import load_spec

        args += ["--project", str(project)]
        spec = load_spec(project)
        users, newest_s = scan_log(project)
        if spec.serve.clock == "log":  # events at the log's time, advancing with the wall clock
            sim_start_s = newest_s
        cache_backend = spec.backends.candidate_cache.split("://", 1)[0]
    elif service == "pipeline":
        raise InputError("the pipeline service needs --project (or use --service synthetic)")
    if service == "synthetic":
        args += ["--synthetic-cpu-ms", str(synthetic_cpu_ms)]
        cache_backend = "synthetic"
    if not metrics:
        args.append("--no-metrics")
    keys, env = bench_keys(project)
    server = ServerProcess(args, env)
    try:
        addr = server.addresses(READY_TIMEOUT_S)
        ready = wait_ready(addr["http"], READY_TIMEOUT_S)
        port = addr["http_port"] if protocol == "http" else addr["grpc_port"]
        # A lone process (--workers 1) names itself as its worker: counted once.
        pids = list(dict.fromkeys([server.proc.pid, *addr.get("pids", [])]))
        base = {
            "host": addr["host"],
            "port": port,
            "protocol": protocol,
            "concurrency": concurrency,
            "connections": connections,
            "channels": max(4, 2 * len(pids)),
            "warmup_s": warmup_s,
            "seed": seed,
            "api_keys": keys,
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
        feed_cfg = {
            **base,
            "target": "feed",
            "duration_s": duration_s,
            "users": users,
            "event_share": event_share,
            "sim_start_s": sim_start_s,
        }
        if rate is not None:
            feed_cfg["rate"] = rate
        # The server's CPU over the feed run, every process of it: what this load cost in cores
        # (the planner's requests/s per core comes from here, not from assuming one core per
        # process). The generator's warm-up is inside the window, so the run's wall time is too.
        cpu0, began = tree_cpu_s(server.proc.pid, pids), time.monotonic()
        feed = drive(feed_cfg, budget)
        elapsed_s = time.monotonic() - began
        cpu1 = tree_cpu_s(server.proc.pid, pids)
    finally:
        exit_code = server.stop()
    server_cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
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
        "server_cpu_s": round(server_cpu, 3) if server_cpu is not None else None,
        "server_cores": round(server_cpu / elapsed_s, 3) if server_cpu is not None else None,
        "workers": int(addr.get("workers", 1)),
        "event_share": event_share,
        "feed_rps": feed.get("feed_rps", feed["rps"]),
        "events_p99_ms": feed.get("events", {}).get("p99_ms"),
        "lag_p99_ms": feed.get("lag_p99_ms"),
        "loadgen_cores": feed.get("loadgen_cores"),
    }
