"""The CPU cost of the serving metrics: the same server with metrics on and off, in one run.

Each round starts ``feedstack serve`` (bench/serve.py's ServerProcess) once with metrics and once
with ``--no-metrics`` (the order alternates between rounds so a machine getting busier does not
favour one), warms it up, then offers the same open-loop load (``rate`` feed requests/s for
``duration_s``, the project's users, bench/loadgen.py in its own process) and reads the server
process's CPU time (``/proc/<pid>/stat`` utime + stime, all threads) before and after. The idle
CPU of the server (background threads: impression flusher, log follower), measured for a while
just before the load, is subtracted. So

    cpu_per_request_ms = (cpu during load - idle cpu rate x load seconds) / requests answered
    overhead = median(cpu_per_request on) / median(cpu_per_request off) - 1

Open loop at a rate the server sustains keeps the work identical in both arms; closed-loop
throughput would fold queueing into the comparison. Two cores are shared with the load generator
and other work: read the ratio, not the absolute numbers.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from feedstack.bench.machine import tree_cpu_s
from feedstack.bench.serve import ServerProcess, bench_keys, project_users, run_loadgen, wait_ready
from feedstack.core.errors import InputError, NotSupported

READY_TIMEOUT_S = 300.0
IDLE_S = 2.0
OVERHEAD_TARGET = 0.05  # the monitoring requirement: metrics cost at most 5 % of request CPU


def _cpu_s(pid: int) -> float:
    """The server's CPU seconds so far (the supervisor and its workers); this benchmark cannot
    do without them."""
    cpu = tree_cpu_s(pid)
    if cpu is None:
        raise NotSupported(f"cannot read /proc/{pid}/stat (Linux only)")
    return cpu


def _one(
    project: Path,
    users: list[str],
    *,
    metrics: bool,
    rate: float,
    duration_s: float,
    protocol: str,
    service: str,
    idle_s: float,
    synthetic_cpu_ms: float = 0.0,
) -> dict[str, Any]:
    args = ["serve", "--port", "0", "--grpc-port", "0", "--json", "--project", str(project)]
    args += ["--service", service]
    if service == "synthetic":
        args += ["--synthetic-cpu-ms", str(synthetic_cpu_ms)]
    if not metrics:
        args.append("--no-metrics")
    keys, env = bench_keys(project)
    server = ServerProcess(args, env)
    try:
        addr = server.addresses(READY_TIMEOUT_S)
        wait_ready(addr["http"], READY_TIMEOUT_S)
        port = addr["http_port"] if protocol == "http" else addr["grpc_port"]
        base = {
            "host": addr["host"],
            "port": port,
            "protocol": protocol,
            "target": "feed",
            "users": users,
            "concurrency": 16,
            "connections": 32,
            "seed": 0,
            "api_keys": keys,
        }
        budget = duration_s + 120.0
        warm_s = min(1.0, duration_s)
        run_loadgen({**base, "duration_s": warm_s, "warmup_s": 0.0, "rate": rate}, budget)
        pid = server.proc.pid
        idle0 = _cpu_s(pid)
        time.sleep(idle_s)  # the server's own background CPU, to subtract
        idle_rate = (_cpu_s(pid) - idle0) / idle_s
        cpu0, t0 = _cpu_s(pid), time.perf_counter()
        feed = run_loadgen(
            {**base, "duration_s": duration_s, "warmup_s": 0.0, "rate": rate}, budget
        )
        cpu1, t1 = _cpu_s(pid), time.perf_counter()
    finally:
        server.stop()
    busy_s = max(0.0, (cpu1 - cpu0) - idle_rate * (t1 - t0))
    ok = int(feed["ok"])
    return {
        "metrics": metrics,
        "requests": ok,
        "errors": int(feed["errors"]),
        "cpu_s": round(cpu1 - cpu0, 3),
        "idle_cpu_per_s": round(idle_rate, 4),
        "cpu_per_request_ms": round(busy_s / ok * 1000, 4) if ok else None,
        "p50_ms": feed["p50_ms"],
        "p99_ms": feed["p99_ms"],
    }


def metric_calls_cpu_us(k: int = 20, sources: int = 4, repeats: int = 20_000) -> float:
    """CPU microseconds of one feed request's metric calls, in-process: the call mix of
    serve/http.py and serve/pipeline.py (request histogram and counter, cache lookup, impressions,
    k scores, k sources, six stages). A second estimate of the overhead, free of the run-to-run
    noise of whole servers on shared cores."""
    from feedstack.monitor.metrics import ServingMetrics

    m = ServingMetrics()
    scores = [((i * 7919) % 97) / 24.0 - 2.0 for i in range(k)]
    names = [f"source{i % sources}" for i in range(k)]
    stage_ms = {"candidates": 0.3, "user_features": 0.2, "item_features": 0.1, "rank": 1.0}
    stage_ms |= {"filter": 0.1, "log": 0.05}

    def one() -> None:
        m.request_seconds.labels("feed", "http").observe(0.003)
        m.requests.labels("feed", "http", "2xx").inc()
        m.cache.labels("hit").inc()
        m.impressions.labels("v1", "champion").inc(k)
        m.observe_scores(scores)
        for name in names:
            m.candidates.labels(name).inc()
        m.observe_stages(stage_ms)

    one()
    t0 = time.process_time()
    for _ in range(repeats):
        one()
    return (time.process_time() - t0) / repeats * 1e6


def run_metrics_overhead(
    project: Path,
    *,
    rate: float = 100.0,
    duration_s: float = 10.0,
    rounds: int = 2,
    protocol: str = "http",
    service: str = "pipeline",
    idle_s: float = IDLE_S,
    synthetic_cpu_ms: float = 0.0,
) -> dict[str, Any]:
    """``service="synthetic"`` (fixed items, no pipeline; ``synthetic_cpu_ms`` of work per
    request) exercises the harness without a trained project; the overhead that matters is the
    pipeline's."""
    if rate <= 0 or duration_s <= 0 or rounds < 1:
        raise InputError(
            f"--rate and --duration must be > 0 and --rounds >= 1, got {rate}, {duration_s}, "
            f"{rounds}"
        )
    users = project_users(project) if service == "pipeline" else []
    runs = []
    for r in range(rounds):
        for metrics in (True, False) if r % 2 == 0 else (False, True):
            runs.append(
                _one(
                    project,
                    users,
                    metrics=metrics,
                    rate=rate,
                    duration_s=duration_s,
                    protocol=protocol,
                    service=service,
                    idle_s=idle_s,
                    synthetic_cpu_ms=synthetic_cpu_ms,
                )
            )

    def median(on: bool) -> float | None:
        vals = [x["cpu_per_request_ms"] for x in runs if x["metrics"] == on]
        vals = [v for v in vals if v is not None]
        return statistics.median(vals) if vals else None

    on, off = median(True), median(False)
    overhead = (on / off - 1.0) if on is not None and off else None
    # Each round's on/off ratio (order alternates): their spread shows the run-to-run noise.
    pair_ratios = []
    for first, second in zip(runs[::2], runs[1::2], strict=True):
        on_run, off_run = (first, second) if first["metrics"] else (second, first)
        if on_run["cpu_per_request_ms"] and off_run["cpu_per_request_ms"]:
            pair_ratios.append(
                round(on_run["cpu_per_request_ms"] / off_run["cpu_per_request_ms"], 4)
            )
    calls_us = metric_calls_cpu_us()
    return {
        "cpu_per_request_ms_metrics_on": on,
        "cpu_per_request_ms_metrics_off": off,
        "overhead": None if overhead is None else round(overhead, 4),
        "pair_ratios_on_over_off": pair_ratios,
        "metric_calls_us_per_request": round(calls_us, 2),
        "overhead_inproc": round(calls_us / 1000 / off, 4) if off else None,
        "overhead_target": OVERHEAD_TARGET,
        "met": None if overhead is None else overhead <= OVERHEAD_TARGET,
        "rate": rate,
        "duration_s": duration_s,
        "rounds": rounds,
        "protocol": protocol,
        "service": service,
        "runs": runs,
    }
