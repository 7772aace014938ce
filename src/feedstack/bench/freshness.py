"""Feature freshness: event time to online feature write, producer and worker as processes.

``run_freshness_bench``: a producer process appends events at a sustained rate, event time = now,
through the ingest pipeline (validate, dead-letter, durable append), while a worker process tails
the log and writes features. Lag per event = online write complete (worker's wall clock) - event
time, so it includes the producer's batching, the durable append, the poll, the aggregation and
the sink write. Separate processes, not threads: the GIL would make the producer and the worker
take turns on one core and charge the producer's work to the lag; as processes they run on both
cores, as the ingest API and the worker do in production. Same machine, same clock.

Sinks: ``memory`` (MemorySink: rows become dicts), ``count`` (CountingSink: rows counted and
dropped, the worker's own cost), ``feast`` / ``feast-redis`` (the store of record: a Feast repo
generated and applied in a scratch folder, SQLite or Redis online store, Parquet offline files).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import shutil
import tempfile
import time
from collections.abc import Sequence
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
    from feedstack.features.worker import FeatureWorker, WorkerConfig
    from feedstack.features.worker_metrics import lag_summary_ms

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
        from feedstack.features.feast_cli import apply_repo

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
