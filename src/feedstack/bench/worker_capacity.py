"""Feature worker capacity.

``run_worker_bench``: events/s of the worker replaying a pre-filled log on one core (and of the
backfill), the item-cache call for 500 candidates, and, in a fresh process, the peak RSS of the
window state for ``big_users`` users fed straight into the aggregator.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import random
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from feedstack.bench.freshness import CountingSink, SyntheticStream

TARGET_WORKER_EVENTS_PER_S = 20_000
TARGET_STATE_MB = 1_024


def _pin_one_core() -> None:
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def _fill_log(path: Path, n: int, users: int, articles: int, span_s: float) -> Any:
    from feedstack.core.events import EVENT_ADAPTER
    from feedstack.storage.sqlite_log import SqliteEventLog

    log = SqliteEventLog(path)
    stream = SyntheticStream(users, articles, seed=2)
    start = time.time() - span_s - 3600
    step = span_s / n
    chunk = 50_000
    for s in range(0, n, chunk):
        k = min(chunk, n - s)
        payloads = [orjson.dumps(e) for e in stream.take(k, start + s * step, step, late_s=30)]
        log.append([EVENT_ADAPTER.validate_json(p) for p in payloads], payloads)
    return log


def _time_calls(fn: Callable[[], Any], n: int) -> dict[str, float]:
    fn()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    us = np.asarray(samples) * 1e6
    return {
        "p50_us": round(float(np.percentile(us, 50)), 1),
        "p99_us": round(float(np.percentile(us, 99)), 1),
    }


def _rss_mb() -> tuple[float, float]:
    """(current, peak) resident set of this process, MB. From /proc (VmRSS, VmHWM): getrusage's
    ru_maxrss survives exec, so a spawned child would report its parent's peak."""
    found = {}
    with contextlib.suppress(OSError), open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                found[line[:5]] = int(line.split()[1]) / 1024
    if len(found) == 2:
        return found["VmRSS"], found["VmHWM"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return peak, peak


def _memory_main(users: int, events_per_user: float, articles: int, out: Any) -> None:
    from feedstack.features.aggregator import FeatureAggregator
    from feedstack.features.checkpoint import save_checkpoint

    base_mb, _ = _rss_mb()
    agg = FeatureAggregator()
    # Only feature-carrying events, users visited with a stride: every user gets state.
    stream = SyntheticStream(users, articles, seed=3, items=10, stateful=True)
    n = int(users * events_per_user)
    start = time.time() - 86_400
    step = 86_400 / n
    t0 = time.perf_counter()
    for s in range(0, n, 20_000):
        k = min(20_000, n - s)
        agg.apply(stream.take(k, start + s * step, step))
    apply_s = time.perf_counter() - t0
    _, peak_mb = _rss_mb()
    arrays = [v for v in vars(agg).values() if isinstance(v, np.ndarray)]
    state_bytes = sum(a.nbytes for a in arrays)
    with tempfile.TemporaryDirectory(prefix="fsbench-mem-") as tmp:
        path = Path(tmp) / "ckpt.npz"
        t = time.perf_counter()
        save_checkpoint(agg, "0", path)
        ckpt_s = time.perf_counter() - t
        ckpt_bytes = path.stat().st_size
    _, peak_ckpt_mb = _rss_mb()
    out.put(
        {
            "users": len(agg.users),
            "users_target": users,
            "articles": len(agg.articles),
            "events": n,
            "events_per_s": round(n / apply_s, 1),
            "baseline_rss_mb": round(base_mb, 1),
            "peak_rss_mb": round(peak_mb, 1),
            "state_mb": round(peak_mb - base_mb, 1),
            "peak_rss_with_checkpoint_mb": round(peak_ckpt_mb, 1),
            "numpy_state_mb": round(state_bytes / 2**20, 1),
            "checkpoint_mb": round(ckpt_bytes / 2**20, 1),
            "checkpoint_s": round(ckpt_s, 3),
            "target_state_mb": TARGET_STATE_MB,
            "meets_target": peak_mb - base_mb <= TARGET_STATE_MB,
        }
    )


def run_worker_bench(
    events: int = 1_000_000,
    users: int = 100_000,
    articles: int = 2_000,
    span_s: float = 86_400.0,
    big_users: int = 1_000_000,
    batch: int = 5_000,
) -> dict[str, Any]:
    """Worker and backfill throughput on one core over a pre-filled SQLite log; the item-cache
    call for 500 ids; peak RSS for ``big_users`` (0 skips it) in a fresh process."""
    from feedstack.features.backfill import backfill_log
    from feedstack.features.item_cache import ItemFeatureCache
    from feedstack.features.tail import PollingTail
    from feedstack.features.worker import FeatureWorker, WorkerConfig

    out: dict[str, Any] = {"events": events, "users": users, "articles": articles}
    out["span_s"] = span_s
    with tempfile.TemporaryDirectory(prefix="fsbench-worker-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        log = _fill_log(work / "events.sqlite", events, users, articles, span_s)
        out["fill_s"] = round(time.perf_counter() - t, 1)
        _pin_one_core()
        sink = CountingSink()
        worker = FeatureWorker(
            PollingTail(log),
            sink,
            checkpoint_path=work / "ckpt.npz",
            config=WorkerConfig(max_batch=batch, max_wait_s=0.0, checkpoint_every_s=10.0),
        )
        rep = worker.run(once=True)
        out["worker"] = {
            "events_per_s": round(rep.events / rep.seconds, 1),
            "seconds": round(rep.seconds, 2),
            "batch": batch,
            "checkpoints": rep.checkpoints,
            "online_rows": sink.online,
            "snapshot_rows": sink.offline,
            "target_events_per_s": TARGET_WORKER_EVENTS_PER_S,
            "meets_target": rep.events / rep.seconds >= TARGET_WORKER_EVENTS_PER_S,
        }
        _, brep = backfill_log(log, CountingSink())
        out["backfill"] = {"events_per_s": round(brep.events / brep.seconds, 1)}

        cache = ItemFeatureCache(PollingTail(log))
        t = time.perf_counter()
        cache.refresh()
        refresh_s = time.perf_counter() - t
        ids = [f"a{i}" for i in range(cache.size)]
        rng = random.Random(0)
        cands = [rng.sample(ids, min(500, len(ids))) for _ in range(64)]
        at = (cache.watermark_s or time.time()) + 1
        it = iter(range(10**9))
        timing = _time_calls(lambda: cache.features(cands[next(it) % 64], at), 2_000)
        out["item_cache"] = {
            "articles": cache.size,
            "candidates": 500,
            "features": len(cache.columns),
            "call_p50_us": timing["p50_us"],
            "call_p99_us": timing["p99_us"],
            "replay_events_per_s": round(cache.events / refresh_s, 1),
        }
        log.close()
    if big_users:
        ctx = mp.get_context("spawn")
        q: Any = ctx.Queue()
        p = ctx.Process(target=_memory_main, args=(big_users, 2.0, articles, q))
        p.start()
        out["memory"] = q.get(timeout=1800)
        p.join(60)
    return out
