"""Feature freshness and worker capacity.

``run_freshness_bench``: a producer process appends events at a sustained rate, event time = now,
through the ingest pipeline (validate, dead-letter, durable append), while a worker process tails
the log and writes features. Lag per event = online write complete (worker's wall clock) - event
time, so it includes the producer's batching, the durable append, the poll, the aggregation and
the sink write. Separate processes, not threads: the GIL would make the producer and the worker
take turns on one core and charge the producer's work to the lag; as processes they run on both
cores, as the ingest API and the worker do in production. Same machine, same clock.

``run_worker_bench``: events/s of the worker replaying a pre-filled log on one core (and of the
backfill), the item-cache call for 500 candidates, and, in a fresh process, the peak RSS of the
window state for ``big_users`` users fed straight into the aggregator.

Sinks: ``memory`` (MemorySink: rows become dicts), ``count`` (CountingSink: rows counted and
dropped, the worker's own cost), ``feast`` / ``feast-redis`` (the store of record: a Feast repo
generated and applied in a scratch folder, SQLite or Redis online store, Parquet offline files).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import random
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from feedstack.features.rows import FeatureRows
from feedstack.features.sink import FeatureSink, MemorySink

TOPICS = ("politics", "business", "tech", "science", "sports", "culture", "health", "world")
REGIONS = ("na", "eu", "asia", "latam", "africa")
TARGET_LAG_P99_MS = {"sqlite": 1_000.0, "redis": 2_000.0}
TARGET_WORKER_EVENTS_PER_S = 20_000
TARGET_STATE_MB = 1_024


class CountingSink:
    """A sink that counts rows and keeps none (the worker's cost without a store's)."""

    def __init__(self) -> None:
        self.online = 0
        self.offline = 0

    def write_online(self, rows: Sequence[FeatureRows]) -> None:
        self.online += sum(len(r) for r in rows)

    def write_offline(self, rows: Sequence[FeatureRows]) -> None:
        self.offline += sum(len(r) for r in rows)


SINKS = ("memory", "count", "feast", "feast-redis")
# Points of the lag CDF kept in the record (the design report plots it).
CDF_QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0)


def _feast_repo(kind: str, where: dict[str, Any]) -> Any:
    """The scratch Feast repo: SQLite online store (``feast``) or Redis (``feast-redis``)."""
    from feedstack.features.feast_repo import FeastRepo

    project = Path(where["work"]) / "project"
    if kind == "feast-redis":
        url = where.get("url") or "redis://127.0.0.1:6379/0"
        return FeastRepo.for_project(project, f"{url}?prefix=fsbenchfeast{os.getpid()}")
    return FeastRepo.for_project(project)


def _sink(kind: str, repo: Any = None) -> FeatureSink:
    """``memory``, ``count``, or a FeastFeatureStore over an applied ``repo``."""
    if kind.startswith("feast"):
        from feedstack.features.feast_store import FeastFeatureStore

        return FeastFeatureStore(repo)
    return MemorySink() if kind == "memory" else CountingSink()


def iso(t_s: float) -> str:
    return datetime.fromtimestamp(t_s, UTC).isoformat().replace("+00:00", "Z")


class SyntheticStream:
    """Feed-shaped events, deterministic for a seed: per 100 events about 45 impressions of
    ``items`` articles, 25 clicks, 20 dwells, 5 hides, 4 profile updates and 1 new article.
    Users are visited with a stride (all ``users`` are touched every ``users`` events); articles
    come from the ``articles`` most recently published."""

    def __init__(
        self, users: int, articles: int, seed: int = 0, items: int = 10, stateful: bool = False
    ) -> None:
        self.users = users
        self.stateful = stateful  # only event types that carry features (no dwell, no hide)
        self.articles = articles
        self.items = items
        self.seed = seed
        self.rng = random.Random(seed)
        self.i = 0
        self.published = 0

    def _user(self) -> str:
        return f"u{(self.i * 7919 + self.seed) % self.users}"

    def _article(self) -> str:
        low = max(0, self.published - self.articles)
        return f"a{self.rng.randrange(low, self.published)}"

    def event(self, t_s: float) -> dict[str, Any]:
        rng = self.rng
        roll = rng.random()
        t = iso(t_s)
        base: dict[str, Any] = {"event_id": f"s{self.seed}-{self.i}", "event_time": t}
        if self.published < min(self.items, self.articles) or roll < 0.01:
            a = self.published
            self.published += 1
            ev: dict[str, Any] = {
                "type": "article_published",
                "article_id": f"a{a}",
                "title": f"Story {a}",
                "text": "Body text.",
                "topic": TOPICS[a % len(TOPICS)],
                "region": REGIONS[a % len(REGIONS)],
                "publish_time": t,
            }
        elif roll < 0.46:
            low = max(0, self.published - self.articles)
            pool = range(low, self.published)
            ev = {
                "type": "impression",
                "request_id": f"r{self.i}",
                "user_id": self._user(),
                "item_ids": [f"a{a}" for a in rng.sample(pool, min(self.items, len(pool)))],
                "model_version": "bench",
            }
        elif roll < 0.71:
            ev = {"type": "click", "user_id": self._user(), "article_id": self._article()}
        elif roll < 0.91 and not self.stateful:
            ev = {
                "type": "dwell",
                "user_id": self._user(),
                "article_id": self._article(),
                "dwell_ms": rng.randrange(1_000, 120_000),
            }
        elif roll < 0.96 and not self.stateful:
            ev = {"type": "hide", "user_id": self._user(), "article_id": self._article()}
        elif roll >= 0.96:
            ev = {
                "type": "user_profile",
                "user_id": self._user(),
                "region": REGIONS[rng.randrange(len(REGIONS))],
                "signup_time": "2025-01-01T00:00:00Z",
            }
        else:  # stateful: a click instead of a dwell or a hide
            ev = {"type": "click", "user_id": self._user(), "article_id": self._article()}
        self.i += 1
        base.update(ev)
        return base

    def take(self, n: int, start_s: float, step_s: float, late_s: float = 0.0) -> list[Any]:
        """``n`` events at ``start_s``, ``start_s + step_s``, ...; with ``late_s``, one event in
        20 arrives up to ``late_s`` seconds late (event time before its neighbours)."""
        out = []
        for k in range(n):
            t = start_s + k * step_s
            if late_s and self.rng.random() < 0.05:
                t -= self.rng.uniform(0, late_s)
            out.append(self.event(t))
        return out


# ------------------------------------------------------------------- processes and logs
def _open_log(where: dict[str, Any]) -> Any:
    if where["backend"] == "kafka":
        from feedstack.storage.kafka_log import KafkaEventLog

        return KafkaEventLog(where["url"])
    if where["backend"] == "redis":
        from feedstack.storage.redis_log import RedisStreamEventLog

        return RedisStreamEventLog(where["url"], prefix=where["prefix"])
    from feedstack.storage.sqlite_log import SqliteEventLog

    return SqliteEventLog(Path(where["path"]))


def _producer_main(
    where: dict[str, Any],
    rate: float,
    duration_s: float,
    users: int,
    articles: int,
    batch_s: float,
    go: Any,
    out: Any,
) -> None:
    from feedstack.core.clock import SystemClock
    from feedstack.core.spec import Ingest
    from feedstack.ingest.pipeline import Ingestor
    from feedstack.ingest.records import RawRecord
    from feedstack.ingest.validate import Validator
    from feedstack.storage.deadletter import FileDeadLetter

    log = _open_log(where)
    ing = Ingestor(
        log, FileDeadLetter(Path(where["work"]) / "dl"), Validator(Ingest(), SystemClock())
    )
    stream = SyntheticStream(users, articles, seed=1)
    go.wait()
    began = time.perf_counter()
    sent = rejected = 0
    next_at = began
    while True:
        now = time.perf_counter()
        elapsed = now - began
        if elapsed >= duration_s:
            break
        due = int(rate * elapsed) - sent
        if due > 0:
            t = time.time()  # event time = now: the clock the worker's lag is measured against
            records = [
                RawRecord("bench", sent + k, orjson.dumps(e))
                for k, e in enumerate(stream.take(due, t, 0.0))
            ]
            res = ing.ingest_batch(records)
            sent += due
            rejected += res.rejected
        next_at += batch_s
        pause = next_at - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        else:
            next_at = time.perf_counter()
    secs = time.perf_counter() - began
    out.put({"sent": sent, "rejected": rejected, "seconds": secs})
    log.close()


def _worker_main(
    where: dict[str, Any],
    sink_kind: str,
    tick_only_views: tuple[str, ...],
    checkpoint_every_s: float,
    warmup_s: float,
    ready: Any,
    stop: Any,
    produced: Any,
    out: Any,
) -> None:
    from feedstack.features.worker import FeatureWorker, WorkerConfig, lag_summary_ms

    log = _open_log(where)
    config = WorkerConfig(
        keep_lags=True, checkpoint_every_s=checkpoint_every_s, tick_only_views=tick_only_views
    )
    sink = _sink(sink_kind, where.get("feast_repo"))
    if sink_kind.startswith("feast"):  # import feast and load the registry before the clock
        from feedstack.features.definitions import VIEWS

        for view in VIEWS:
            sink.feature_view(view.name)  # type: ignore[attr-defined]
    worker = FeatureWorker.open(log, sink, Path(where["work"]) / "ckpt.npz", config)
    ready.set()
    began_wall = time.time()
    cpu0 = time.process_time()
    report = worker.run(stop=lambda: stop.is_set() and worker.report.events >= produced.value)
    cpu = time.process_time() - cpu0
    times = np.concatenate(worker.lag_times) if worker.lag_times else np.zeros(0)
    lags = np.concatenate(worker.lags) if worker.lags else np.zeros(0)
    steady = lags[times >= began_wall + warmup_s]
    out.put(
        {
            "report": report.to_dict(),
            "lag_ms": lag_summary_ms(steady),
            "lag_ms_all": lag_summary_ms(lags),
            "lag_quantiles_ms": {
                str(q): round(float(v) * 1000, 2)
                for q, v in zip(CDF_QUANTILES, np.quantile(steady, CDF_QUANTILES), strict=True)
            }
            if steady.size
            else {},
            "cpu_s": cpu,
        }
    )
    worker.close()
    log.close()


def run_freshness_bench(
    rate: float = 5_000,
    duration_s: float = 20.0,
    backend: str = "sqlite",
    redis_url: str | None = None,
    *,
    users: int = 100_000,
    articles: int = 2_000,
    batch_s: float = 0.01,
    warmup_s: float = 2.0,
    checkpoint_every_s: float = 10.0,
    sink: str = "memory",
    tick_only_views: Sequence[str] = (),
) -> dict[str, Any]:
    """Producer and worker in two processes; lag percentiles after ``warmup_s``."""
    ctx = mp.get_context("spawn")
    work = Path(tempfile.mkdtemp(prefix="fsbench-fresh-"))
    where: dict[str, Any] = {"backend": backend, "work": str(work)}
    if backend == "redis":
        where["prefix"] = f"fsbench-fresh-{os.getpid()}"
    else:
        where["path"] = str(work / "events.sqlite")
    where["url"] = redis_url or "redis://127.0.0.1:6379/0"
    log = _open_log(where)  # create it before either process opens it
    repo = None
    if sink.startswith("feast"):  # generate and apply the Feast repo before the clock starts
        from feedstack.features.feast_repo import apply_repo

        repo = _feast_repo(sink, where)
        apply_repo(repo)
        where["feast_repo"] = repo
    ready, stop, go = ctx.Event(), ctx.Event(), ctx.Event()
    produced = ctx.Value("q", 2**62)  # until the producer reports, "not done"
    results: Any = ctx.Queue()
    producer_out: Any = ctx.Queue()
    worker = ctx.Process(
        target=_worker_main,
        args=(
            where,
            sink,
            tuple(tick_only_views),
            checkpoint_every_s,
            warmup_s,
            ready,
            stop,
            produced,
            results,
        ),
    )
    producer = ctx.Process(
        target=_producer_main,
        args=(where, rate, duration_s, users, articles, batch_s, go, producer_out),
    )
    try:
        worker.start()
        producer.start()
        while not ready.wait(0.2):
            if not worker.is_alive():
                raise RuntimeError(f"the worker process exited ({worker.exitcode})")
        go.set()
        prod = producer_out.get(timeout=duration_s + 120)
        produced.value = prod["sent"] - prod["rejected"]
        stop.set()
        res = results.get(timeout=300)
        producer.join(30)
        worker.join(30)
    finally:
        for p in (producer, worker):
            if p.is_alive():
                p.kill()
        if backend == "redis":
            log.drop()
        log.close()
        if repo is not None:
            from feedstack.features.feast_store import FeastFeatureStore

            FeastFeatureStore(repo).teardown()
        shutil.rmtree(work, ignore_errors=True)
    rep = res["report"]
    lag = res["lag_ms"]
    target = TARGET_LAG_P99_MS.get(backend)
    return {
        "backend": backend,
        "sink": sink,
        "tick_only_views": list(tick_only_views),
        "users": users,
        "target_rate": rate,
        "duration_s": duration_s,
        "events": prod["sent"],
        "rejected": prod["rejected"],
        "events_per_s": round(prod["sent"] / prod["seconds"], 1),
        "lag_p50_ms": lag.get("p50"),
        "lag_p95_ms": lag.get("p95"),
        "lag_p99_ms": lag.get("p99"),
        "lag_max_ms": lag.get("max"),
        "lag_events_measured": lag.get("n"),
        "warmup_s": warmup_s,
        "lag_all_ms": res["lag_ms_all"],
        "lag_quantiles_ms": res["lag_quantiles_ms"],  # the CDF the report plots
        "worker_events": rep["events"],
        "worker_batches": rep["batches"],
        "worker_checkpoints": rep["checkpoints"],
        "worker_busy_events_per_s": rep["busy_events_per_s"],
        "worker_cpu_s": round(res["cpu_s"], 2),
        "worker_busy_fraction": round(rep["busy_s"] / rep["seconds"], 3) if rep["seconds"] else 0,
        "target_lag_p99_ms": target,
        "meets_target": bool(target is not None and lag and lag["p99"] <= target),
        "producer_worker": "separate processes",
    }


# ------------------------------------------------------------------------ worker capacity
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
