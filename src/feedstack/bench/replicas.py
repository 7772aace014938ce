"""``feedstack bench replicas``: several serving replicas behind a real load balancer.

One run: start ``replicas`` copies of ``feedstack serve --project P --workers W`` (each a
replica: a supervisor and its serving processes on its own free ports, every replica reading the
project's shared stores: the event log, the online store, the candidate cache), write an HAProxy
configuration that shards the feed requests by region (``balance url_param region`` with
consistent hashing: every request of a region goes to the same replica while it is up; a request
without a region, e.g. an event post, goes round robin), start ``haproxy`` in the foreground,
drive it from a separate load-generator process (bench/loadgen.py: the project's user mix, each
feed request carrying the user's region from the log, a share of requests posting events), read
HAProxy's per-replica request counts from its stats page, and stop everything (SIGUSR1: HAProxy's
graceful stop; SIGTERM: the replicas).

Measured: requests/s and latency through the balancer, each replica's CPU (the supervisor and
its workers) and the balancer's, so ``server_cpu_s / elapsed_s`` are the cores the replicas
used for this load: what the planner predicts from requests/s per core (plan/check.py).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from feedstack.bench.machine import tree_cpu_s
from feedstack.bench.serve import (
    EVENT_SHARE,
    READY_TIMEOUT_S,
    ServerProcess,
    bench_keys,
    run_loadgen,
    scan_log,
    wait_ready,
)
from feedstack.core.errors import BackendUnavailable, InputError

HAPROXY = "/usr/sbin/haproxy"
MAX_REPLICAS = 8
IDLE_S = 2.0


def haproxy_path() -> str | None:
    import shutil

    return shutil.which("haproxy") or (HAPROXY if Path(HAPROXY).exists() else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def haproxy_config(port: int, stats_port: int, servers: list[int]) -> str:
    """Feed requests sharded by their ``region`` parameter over ``servers`` (loopback ports)."""
    lines = [
        "global",
        "    maxconn 4096",
        "    nbthread 1",
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 30s",
        "    timeout server 30s",
        "    option http-keep-alive",
        "frontend feeds",
        f"    bind 127.0.0.1:{port}",
        "    default_backend replicas",
        "backend replicas",
        "    balance url_param region",
        "    hash-type consistent",
        "    http-reuse always",
        "    option httpchk GET /healthz",
        *(f"    server r{i} 127.0.0.1:{p} check inter 2s" for i, p in enumerate(servers)),
        "listen stats",
        f"    bind 127.0.0.1:{stats_port}",
        "    stats enable",
        "    stats uri /stats",
    ]
    return "\n".join(lines) + "\n"


def user_regions(project: Path) -> dict[str, str]:
    """Each user's region from the log's ``user_profile`` events (the last one wins)."""
    from feedstack.core.spec import load_spec
    from feedstack.storage.eventlog import open_event_log

    log = open_event_log(load_spec(project).backends.event_log, project)
    out: dict[str, str] = {}
    after: str | None = None
    try:
        while batch := log.read_raw(after, 20_000):
            for _, raw in batch:
                if b'"user_profile"' in raw:
                    ev = orjson.loads(raw)
                    if ev.get("type") == "user_profile" and isinstance(ev.get("region"), str):
                        out[ev["user_id"]] = ev["region"]
            after = batch[-1][0]
    finally:
        log.close()
    return out


def item_state_rate(project: Path) -> dict[str, Any]:
    """What following the log costs a serving process: the project's whole log applied to a
    fresh article state (features/item_cache.py, the serving process's own code), events per
    CPU-second of this process."""
    from feedstack.core.spec import load_spec
    from feedstack.features.item_cache import ItemFeatureCache
    from feedstack.features.tail import PollingTail
    from feedstack.storage.eventlog import open_event_log

    log = open_event_log(load_spec(project).backends.event_log, project)
    try:
        cache = ItemFeatureCache(PollingTail(log))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        cache.refresh()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        log.close()
    return {
        "events": cache.events,
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
        "events_per_s": round(cache.events / cpu, 1) if cpu > 0 else None,
        "us_per_event": round(cpu / cache.events * 1e6, 2) if cache.events else None,
    }


class Balancer:
    """``haproxy -db -f CONFIG`` in the foreground; stopped gracefully (SIGUSR1)."""

    def __init__(self, config: str, folder: Path) -> None:
        exe = haproxy_path()
        if exe is None:
            raise InputError("haproxy is not installed (Debian package haproxy)")
        path = folder / "haproxy.cfg"
        path.write_text(config)
        check = subprocess.run([exe, "-c", "-f", str(path)], capture_output=True, check=False)
        if check.returncode != 0:
            raise BackendUnavailable(f"haproxy config rejected: {check.stderr.decode()[-300:]}")
        self.proc = subprocess.Popen(
            [exe, "-db", "-f", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def stop(self, timeout_s: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return self.proc.returncode


def _wait_through(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            try:
                if client.get(f"{url}/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    raise BackendUnavailable(f"the load balancer at {url} did not answer ready")


def _stats(stats_port: int) -> dict[str, int]:
    """Requests each replica answered (HAProxy's stats CSV: ``req_tot`` per server)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{stats_port}/stats;csv", timeout=5.0).text
    except httpx.HTTPError:
        return {}
    head, *rows = text.lstrip("# ").splitlines()
    cols = head.split(",")
    out: dict[str, int] = {}
    for row in rows:
        cells = dict(zip(cols, row.split(","), strict=False))
        if cells.get("pxname") == "replicas" and cells.get("svname", "").startswith("r"):
            out[cells["svname"]] = int(cells.get("req_tot") or cells.get("stot") or 0)
    return out


def run_replicas_bench(
    project: Path,
    *,
    replicas: int = 2,
    workers: int = 1,
    rate: float | None = None,
    duration_s: float = 10.0,
    warmup_s: float = 2.0,
    event_share: float = EVENT_SHARE,
    concurrency: int = 16,
    connections: int = 32,
    seed: int = 0,
) -> dict[str, Any]:
    if not 1 <= replicas <= MAX_REPLICAS:
        raise InputError(f"--replicas must be in 1..{MAX_REPLICAS}, got {replicas}")
    if workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    if rate is not None and rate <= 0:
        raise InputError(f"--rate must be > 0, got {rate}")
    if not 0.0 <= event_share < 1.0:
        raise InputError(f"--event-share must be in [0, 1), got {event_share}")
    from feedstack.core.spec import load_spec

    spec = load_spec(project)
    item_state = item_state_rate(project)  # before the replicas start: this process alone
    users, newest_s = scan_log(project)
    regions = user_regions(project)
    keys, env = bench_keys(project)
    args = ["serve", "--project", str(project), "--port", "0", "--grpc-port", "0", "--json"]
    args += ["--workers", str(workers)]
    servers: list[ServerProcess] = []
    balancer: Balancer | None = None
    pids: list[int] = []
    with tempfile.TemporaryDirectory(prefix="feedstack-lb-") as tmp:
        try:
            addrs = []
            for _ in range(replicas):
                servers.append(ServerProcess(args, env))
                addrs.append(servers[-1].addresses(READY_TIMEOUT_S))
            for server, addr in zip(servers, addrs, strict=True):
                wait_ready(addr["http"], READY_TIMEOUT_S)
                # One process serving alone reports its own pid as its worker: count it once.
                pids = list(dict.fromkeys([*pids, server.proc.pid, *addr.get("pids", [])]))
            port, stats_port = free_port(), free_port()
            config = haproxy_config(port, stats_port, [int(a["http_port"]) for a in addrs])
            balancer = Balancer(config, Path(tmp))
            _wait_through(f"http://127.0.0.1:{port}", 30.0)
            cfg: dict[str, Any] = {
                "host": "127.0.0.1",
                "port": port,
                "protocol": "http",
                "concurrency": concurrency,
                "connections": connections,
                "warmup_s": warmup_s,
                "seed": seed,
                "api_keys": keys,
                "target": "feed",
                "duration_s": duration_s,
                "users": users,
                "regions": regions,
                "event_share": event_share,
                "sim_start_s": newest_s if spec.serve.clock == "log" else None,
            }
            if rate is not None:
                cfg["rate"] = rate
            # Warm-up on its own (connections, caches, first requests), then a quiet second
            # for the replicas' idle cost, then the measured run: the CPU window holds the
            # measured requests only, as the planner's requests/s per core assumes.
            warm = {**cfg, "duration_s": max(warmup_s, 0.5), "warmup_s": 0.0}
            warm.pop("rate", None)
            run_loadgen(warm, warmup_s + 60.0)
            idle0, t_idle = tree_cpu_s(pids[0], pids), time.monotonic()
            time.sleep(IDLE_S)
            idle1, idle_s = tree_cpu_s(pids[0], pids), time.monotonic() - t_idle
            before = _stats(stats_port)
            cpu0 = tree_cpu_s(pids[0], pids)
            lb0 = tree_cpu_s(balancer.proc.pid, [balancer.proc.pid])
            began = time.monotonic()
            feed = run_loadgen({**cfg, "warmup_s": 0.0}, duration_s + 60.0)
            elapsed_s = time.monotonic() - began
            cpu1 = tree_cpu_s(pids[0], pids)
            lb1 = tree_cpu_s(balancer.proc.pid, [balancer.proc.pid])
            after = _stats(stats_port)
            per_replica = {k: v - before.get(k, 0) for k, v in after.items()}
        finally:
            lb_exit = balancer.stop() if balancer is not None else None
            exits = [s.stop() for s in servers]
    server_cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
    lb_cpu = lb1 - lb0 if lb0 is not None and lb1 is not None else None
    idle = idle1 - idle0 if idle0 is not None and idle1 is not None else None
    return {
        "replicas": replicas,
        "workers_per_replica": workers,
        "balancer": "haproxy (balance url_param region, hash-type consistent)",
        "shard_key": "region",
        "rps": feed["rps"],
        "feed_rps": feed.get("feed_rps", feed["rps"]),
        "p50_ms": feed["p50_ms"],
        "p95_ms": feed["p95_ms"],
        "p99_ms": feed["p99_ms"],
        "errors": feed["errors"],
        "rate": rate,
        "mode": feed["mode"],
        "event_share": event_share,
        "events_p99_ms": feed.get("events", {}).get("p99_ms"),
        "duration_s": duration_s,
        "users": len(users),
        "users_with_region": sum(1 for u in users if u in regions),
        "regions": len(set(regions.values())),
        "requests_per_replica": per_replica,
        "elapsed_s": round(elapsed_s, 3),
        "server_cpu_s": round(server_cpu, 3) if server_cpu is not None else None,
        "server_cores": round(server_cpu / elapsed_s, 3) if server_cpu is not None else None,
        "balancer_cpu_s": round(lb_cpu, 3) if lb_cpu is not None else None,
        # What the replicas burn with no request (following the log, timers): per replica.
        "idle_cores_per_replica": round(idle / idle_s / replicas, 4) if idle is not None else None,
        "loadgen_cores": feed.get("loadgen_cores"),
        "candidate_cache": spec.backends.candidate_cache.split("://", 1)[0],
        "online_features": spec.backends.online_features.split("://", 1)[0],
        "event_log": spec.backends.event_log.split("://", 1)[0],
        "exit_codes": {"replicas": exits, "balancer": lb_exit},
        "item_state": item_state,
        "feed": feed,
    }
