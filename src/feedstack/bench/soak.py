"""``feedstack bench soak``: the server a user runs, for minutes, under feeds and events.

One ``feedstack serve`` (supervisor + workers, bench/serve.py's ServerProcess) is driven open loop
at ``rate`` requests/s for ``duration_s`` by the load generator in its own process, a share
``event_share`` of the requests posting the clicks and dwells of served feeds. Meanwhile the
resident memory of every server process is sampled every ``sample_s``. Reported:

- feed latency per minute of scheduled time (p50, p99, max): a tail that grows over the run
  (a queue, a collector, a leak's page faults) shows here, not in one overall percentile;
- memory: the sum over the server's processes at each sample, and its growth per minute after
  ``settle_s`` (least squares over the samples past it; the first minutes fill caches, pools
  and the allocator's arenas, which is growth that stops);
- the generator's schedule lag and CPU (it says when it, not the server, was late).

Targets (a 10-minute soak at 200 req/s with events): growth <= 1 MB/min after two minutes, p99
per minute <= 15 ms.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from feedstack.bench.machine import rss_mb, tree_cpu_s
from feedstack.bench.serve import (
    EVENT_SHARE,
    READY_TIMEOUT_S,
    ServerProcess,
    bench_keys,
    scan_log,
    wait_ready,
)
from feedstack.core.errors import BackendUnavailable, InputError

RATE = 200.0
DURATION_S = 600.0
SETTLE_S = 120.0
WINDOW_S = 60.0
SAMPLE_S = 5.0
GROWTH_TARGET_MB_PER_MIN = 1.0
P99_TARGET_MS = 15.0


def growth_mb_per_min(samples: list[tuple[float, float]], settle_s: float) -> float | None:
    """Least-squares slope of (seconds, MB) past ``settle_s``, in MB per minute."""
    late = [(t, mb) for t, mb in samples if t >= settle_s]
    if len(late) < 3:
        return None
    t, mb = np.asarray(late).T
    slope = np.polyfit(t, mb, 1)[0]
    return round(float(slope) * 60.0, 3)


def by_minute(samples: list[tuple[float, float]]) -> list[float]:
    """The mean of the (seconds, MB) samples in each minute."""
    out: dict[int, list[float]] = {}
    for t, mb in samples:
        out.setdefault(int(t // 60), []).append(mb)
    return [round(float(np.mean(out[m])), 1) for m in sorted(out)]


def run_soak_bench(
    project: Path,
    *,
    rate: float = RATE,
    duration_s: float = DURATION_S,
    event_share: float = EVENT_SHARE,
    workers: int | None = None,
    protocol: str = "http",
    settle_s: float = SETTLE_S,
    window_s: float = WINDOW_S,
    sample_s: float = SAMPLE_S,
    seed: int = 0,
    service: str = "pipeline",
) -> dict[str, Any]:
    """``service="synthetic"`` soaks the transports and processes without a trained project."""
    from feedstack.core.spec import Spec, load_spec

    if rate <= 0 or duration_s <= 0:
        raise InputError(f"--rate and --duration must be > 0, got {rate} and {duration_s}")
    users: list[str] = []
    newest_s: float | None = None
    if service == "pipeline":
        spec = load_spec(project)
        users, newest_s = scan_log(project)
    else:
        spec = load_spec(project) if (project / "feedstack.yaml").exists() else Spec()
    args = ["serve", "--port", "0", "--grpc-port", "0", "--json", "--project", str(project)]
    args += ["--service", service]
    if workers is not None:
        args += ["--workers", str(workers)]
    keys, env = bench_keys(project)  # feeds and events, as a front end's keys
    server = ServerProcess(args, env)
    samples: list[tuple[float, float]] = []
    per_process: dict[int, list[float]] = {}
    try:
        addr = server.addresses(READY_TIMEOUT_S)
        ready = wait_ready(addr["http"], READY_TIMEOUT_S)
        pids = [server.proc.pid, *addr.get("pids", [])]
        cfg = {
            "host": addr["host"],
            "port": addr["http_port"] if protocol == "http" else addr["grpc_port"],
            "protocol": protocol,
            "target": "feed",
            "connections": 64,
            "channels": max(4, 2 * len(pids)),
            "warmup_s": 2.0,
            "seed": seed,
            "users": users,
            "rate": rate,
            "duration_s": duration_s,
            "event_share": event_share,
            "sim_start_s": newest_s if spec.serve.clock == "log" else None,
            "api_keys": keys,
            "window_s": window_s,
        }
        gen = subprocess.Popen(
            [sys.executable, "-m", "feedstack.bench.loadgen", orjson.dumps(cfg).decode()],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out: dict[str, bytes] = {}
        reader = threading.Thread(
            target=lambda: out.update(zip(("stdout", "stderr"), gen.communicate(), strict=True)),
            daemon=True,
        )
        reader.start()
        cpu0, t0 = tree_cpu_s(server.proc.pid, pids), time.monotonic()
        # The generator's warm-up and start-up come first: memory is sampled from the start
        # (the settle window covers them).
        while reader.is_alive():
            now = time.monotonic() - t0
            sizes = {p: rss_mb(p) for p in pids}
            for p, mb in sizes.items():
                if mb is not None:
                    per_process.setdefault(p, []).append(round(mb, 2))
            samples.append((now, sum(mb for mb in sizes.values() if mb is not None)))
            reader.join(sample_s)
        elapsed_s = time.monotonic() - t0
        cpu1 = tree_cpu_s(server.proc.pid, pids)
        if gen.returncode != 0:
            tail = out.get("stderr", b"").decode(errors="replace").strip().splitlines()[-3:]
            raise BackendUnavailable(f"load generator failed: {' | '.join(tail)}")
        feed: dict[str, Any] = orjson.loads(out["stdout"])
    finally:
        exit_code = server.stop()
    windows = feed.get("windows", [])
    worst = max((w["p99_ms"] for w in windows if w["requests"]), default=None)
    growth = growth_mb_per_min(samples, settle_s)
    server_cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
    return {
        "rate": rate,
        "duration_s": duration_s,
        "event_share": event_share,
        "protocol": protocol,
        "service": service,
        "workers": int(addr.get("workers", 1)),
        "users": len(users),
        "rps": feed["rps"],
        "p50_ms": feed["p50_ms"],
        "p99_ms": feed["p99_ms"],
        "errors": feed["errors"],
        "p99_ms_worst_minute": worst,
        "p99_ms_by_minute": [w["p99_ms"] for w in windows],
        "rss_mb_start": round(samples[0][1], 1) if samples else None,
        "rss_mb_end": round(samples[-1][1], 1) if samples else None,
        "rss_growth_mb_per_min_after_settle": growth,
        "settle_s": settle_s,
        "rss_mb_by_minute": by_minute(samples),
        "rss_mb_by_process": {str(p): v[-1] for p, v in per_process.items() if v},
        "server_cpu_s": round(server_cpu, 3) if server_cpu is not None else None,
        "server_cores": round(server_cpu / elapsed_s, 3) if server_cpu is not None else None,
        "lag_ms": feed.get("lag_ms"),
        "loadgen_cores": feed.get("loadgen_cores"),
        "events": feed.get("events"),
        "feed": {k: v for k, v in feed.items() if k not in ("windows", "events")},
        "windows": windows,
        "targets": {
            "rss_growth_mb_per_min": GROWTH_TARGET_MB_PER_MIN,
            "p99_ms_per_minute": P99_TARGET_MS,
        },
        "meets_growth_target": growth is not None and growth <= GROWTH_TARGET_MB_PER_MIN,
        "meets_p99_target": worst is not None and worst <= P99_TARGET_MS,
        "ready": ready,
        "server_exit_code": exit_code,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
