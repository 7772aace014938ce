"""Ingest throughput: the full pipeline against the bare storage floor, in one run.

Pipeline = read lines, validate (strict schema + spec limits), dead-letter, durable idempotent
append (one fsynced transaction per batch). Floor = the same payloads written by the same store
with no validation (SQLite executemany per batch; Redis pipelined XADD). The ratio pipeline/floor
is what the numbers mean on a noisy shared machine; absolute rates move with the machine.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from feedstack.core.clock import SystemClock
from feedstack.core.spec import Ingest
from feedstack.ingest.pipeline import Ingestor
from feedstack.ingest.readers import read_jsonl
from feedstack.ingest.validate import Validator
from feedstack.storage.deadletter import FileDeadLetter
from feedstack.storage.eventlog import EventLog
from feedstack.storage.offline import ParquetOfflineStore
from feedstack.storage.sqlite_log import SqliteEventLog


def synthetic_lines(n: int, seed: int = 0) -> Iterator[bytes]:
    """A feed-shaped mix: per request one impression of 10 items, ~1 click and a dwell,
    with profiles and articles sprinkled in (the ratios of a simulated day)."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    i = 0
    while i < n:
        t = (t0 + timedelta(milliseconds=i * 7)).isoformat().replace("+00:00", "Z")
        u = f"u{(i * 7919 + seed) % 100_000}"
        k = i % 10
        if k == 0:
            d: dict[str, Any] = {
                "type": "user_profile",
                "user_id": u,
                "region": "eu",
                "signup_time": t,
            }
        elif k == 1:
            d = {
                "type": "article_published",
                "article_id": f"a{i}",
                "title": "Markets rally",
                "text": "Stocks rose on Tuesday. " * 8,
                "topic": "business",
                "region": "eu",
                "publish_time": t,
            }
        elif k < 6:
            d = {
                "type": "impression",
                "request_id": f"r{i}",
                "user_id": u,
                "item_ids": [f"a{(i + j) % 5000}" for j in range(10)],
                "model_version": "bench",
            }
        elif k < 9:
            d = {
                "type": "click",
                "user_id": u,
                "article_id": f"a{i % 5000}",
                "request_id": f"r{i - 3}",
                "position": k - 6,
            }
        else:
            d = {
                "type": "dwell",
                "user_id": u,
                "article_id": f"a{i % 5000}",
                "dwell_ms": 1000 + i % 50_000,
                "request_id": f"r{i - 4}",
            }
        d["event_id"] = f"b{seed}-{i}"
        d["event_time"] = t
        yield orjson.dumps(d)
        i += 1


def _write(path: Path, n: int) -> int:
    size = 0
    with path.open("wb") as f:
        for line in synthetic_lines(n):
            f.write(line + b"\n")
            size += len(line) + 1
    return size


def _sqlite_floor(path: Path, lines: list[bytes], batch: int) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, event_id TEXT UNIQUE, payload BLOB)")
    t = time.perf_counter()
    for s in range(0, len(lines), batch):
        chunk = lines[s : s + batch]
        db.execute("BEGIN")
        db.executemany(
            "INSERT OR IGNORE INTO events(event_id, payload) VALUES (?, ?)",
            [(str(s + j), p) for j, p in enumerate(chunk)],
        )
        db.execute("COMMIT")
    secs = time.perf_counter() - t
    db.close()
    return secs


def _redis_floor(url: str, lines: list[bytes], batch: int) -> float:
    from feedstack.storage.urls import redis_client

    r = redis_client(url)
    key = f"fsbench-floor-{os.getpid()}"
    t = time.perf_counter()
    for s in range(0, len(lines), batch):
        pipe = r.pipeline(transaction=False)
        for p in lines[s : s + batch]:
            pipe.xadd(key, {"e": p})
        pipe.execute()
    secs = time.perf_counter() - t
    r.delete(key)
    r.close()
    return secs


def _run_pipeline(log: EventLog, data: Path, work: Path, batch: int) -> tuple[float, Any]:
    ing = Ingestor(
        log, FileDeadLetter(work / "dl"), Validator(Ingest(), SystemClock()), None, batch
    )
    t = time.perf_counter()
    report = ing.ingest(read_jsonl(data), sync_offline=False)
    return time.perf_counter() - t, report


def run_ingest_bench(
    events: int = 1_000_000, batch: int = 5_000, redis_url: str | None = None
) -> dict[str, Any]:
    """Measure the embedded (and, given ``redis_url``, the Redis) ingest path."""
    # "One core": keep the run on one CPU (the Redis server runs elsewhere); restored after,
    # so benchmarks that follow in this process (and their children) get every core again.
    cpus: set[int] | None = None
    with contextlib.suppress(AttributeError, OSError):
        cpus = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(cpus)})
    try:
        return _measure(events, batch, redis_url)
    finally:
        if cpus is not None:
            os.sched_setaffinity(0, cpus)


def _measure(events: int, batch: int, redis_url: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"events": events, "batch_size": batch}
    with tempfile.TemporaryDirectory(prefix="fsbench-") as tmp:
        work = Path(tmp)
        data = work / "events.jsonl"
        out["input_bytes"] = _write(data, events)
        lines = data.read_bytes().splitlines()

        floor_s = _sqlite_floor(work / "floor.sqlite", lines, batch)
        log = SqliteEventLog(work / "events.sqlite")
        secs, report = _run_pipeline(log, data, work, batch)
        assert report.accepted == events, report
        t = time.perf_counter()
        again = Ingestor(log, FileDeadLetter(work / "dl"), Validator(Ingest(), SystemClock()))
        dup = again.ingest(read_jsonl(data), sync_offline=False)
        dup_s = time.perf_counter() - t
        t = time.perf_counter()
        exported = ParquetOfflineStore(work / "offline").sync(log)
        export_s = time.perf_counter() - t
        log.close()
        out["embedded"] = {
            "events_per_s": round(events / secs),
            "seconds": round(secs, 3),
            "floor_events_per_s": round(events / floor_s),
            "ratio_to_floor": round(floor_s / secs, 3),
            "reingest_events_per_s": round(events / dup_s),
            "reingest_duplicates": dup.duplicates,
            "parquet_export_events_per_s": round(exported / export_s),
            "end_to_end_events_per_s": round(events / (secs + export_s)),
        }
        if redis_url is not None:
            from feedstack.storage.redis_log import RedisStreamEventLog

            prefix = f"fsbench-{os.getpid()}"
            rlog = RedisStreamEventLog(redis_url, prefix=prefix)
            try:
                rfloor_s = _redis_floor(redis_url, lines, batch)
                rsecs, rreport = _run_pipeline(rlog, data, work / "r", batch)
                assert rreport.accepted == events, rreport
            finally:
                rlog.drop()
                rlog.close()
            out["redis"] = {
                "events_per_s": round(events / rsecs),
                "seconds": round(rsecs, 3),
                "floor_events_per_s": round(events / rfloor_s),
                "ratio_to_floor": round(rfloor_s / rsecs, 3),
            }
    return out
