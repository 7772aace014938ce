"""The stream path at scale: event -> online feature lag with 1 and 2 feature workers in a Kafka
consumer group, at a sustained event rate, through the real ingest pipeline into Kafka.

Per run: a Kafka-protocol broker (a local tansu unless ``bootstrap`` names one), a fresh topic
of ``partitions`` partitions, ``workers`` processes each running a GroupWorker (the command
``feedstack worker run`` runs on a kafka:// log), and a producer process appending through the
Ingestor (validate, dead-letter, durable append: acks=all, delivery reports) at ``rate`` events/s,
event time = now. The producer starts once the group has settled (every member holds
partitions). Lag per event = online write complete (worker's wall clock) - event time, after a
warm-up; percentiles over every worker's events. Each worker also reports its CPU time, so the
record carries events per CPU-second per worker: the per-core rate the planner reads.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from feedstack.bench.freshness import CDF_QUANTILES, _producer_main, _sink

TARGET_LAG_P99_MS = 1_000.0
PARTITIONS = 4


def _member_main(
    where: dict[str, Any],
    index: int,
    sink_kind: str,
    warmup_s: float,
    held: Any,
    go: Any,
    drain: Any,
    out: Any,
) -> None:
    from feedstack.features.group_worker import GroupWorker
    from feedstack.features.worker import WorkerConfig
    from feedstack.storage.kafka_log import KafkaEventLog

    log = KafkaEventLog(where["url"])
    # A group of its own per run: members of an earlier run's group (another topic) must not
    # take part in this run's rebalances.
    config = WorkerConfig(
        keep_lags=True,
        consumer=f"w{index}",
        group=f"features-{log.topic}",
        checkpoint_every_s=10.0,
    )
    worker = GroupWorker(log, _sink(sink_kind), Path(where["work"]) / "ckpt", config)
    while not go.is_set():  # in the group, holding partitions, before the first event
        worker.step()
        held[index] = len(worker.tail.assigned)
    began_wall = time.time()
    cpu0 = time.process_time()
    idle_since: float | None = None
    while True:
        n = worker.step()
        for task in list(worker.tasks.values()):
            task.maybe_checkpoint()
        held[index] = len(worker.tail.assigned)
        if drain.is_set() and n == 0 and worker.caught_up():
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 0.5:
                break
        else:
            idle_since = None
    cpu = time.process_time() - cpu0
    tasks = [*worker.tasks.values(), *worker.retired]  # retired: handed on in a rebalance
    lag_times = [t for task in tasks for t in task.lag_times]
    lag_vals = [v for task in tasks for v in task.lags]
    times = np.concatenate(lag_times) if lag_times else np.zeros(0)
    lags = np.concatenate(lag_vals) if lag_vals else np.zeros(0)
    steady = lags[times >= began_wall + warmup_s]
    events = int(sum(len(v) for v in lag_vals))
    out.put(
        {
            "member": index,
            "partitions": sorted(worker.tasks),
            "events": events,
            "cpu_s": round(cpu, 3),
            "busy_s": round(sum(t.report.busy_s for t in tasks), 3),
            "rebalances": worker.tail.rebalances,
            "steady_lags": steady.tolist(),
            "merged_rows": worker.merger.rows_written if worker.merger else 0,
        }
    )
    worker.close()
    log.close()


def run_stream_run(
    bootstrap: str,
    workers: int,
    rate: float,
    duration_s: float,
    *,
    users: int = 100_000,
    articles: int = 2_000,
    partitions: int = PARTITIONS,
    warmup_s: float = 2.0,
    sink: str = "memory",
) -> dict[str, Any]:
    """One configuration: ``workers`` members, ``rate`` events/s for ``duration_s``."""
    ctx = mp.get_context("spawn")
    work = Path(tempfile.mkdtemp(prefix="fsbench-stream-"))
    topic = f"fsbench-{uuid.uuid4().hex[:8]}"
    url = f"kafka://{bootstrap}/{topic}?partitions={partitions}"
    where: dict[str, Any] = {"backend": "kafka", "url": url, "work": str(work)}
    from feedstack.storage.kafka_log import KafkaEventLog

    log = KafkaEventLog(url)  # creates the topic before anyone joins
    held = ctx.Array("i", workers)
    go, drain = ctx.Event(), ctx.Event()
    results: Any = ctx.Queue()
    producer_out: Any = ctx.Queue()
    members = [
        ctx.Process(target=_member_main, args=(where, i, sink, warmup_s, held, go, drain, results))
        for i in range(workers)
    ]
    producer = ctx.Process(
        target=_producer_main,
        args=(where, rate, duration_s, users, articles, 0.01, go, producer_out),
    )
    try:
        for m in members:
            m.start()
        producer.start()
        deadline = time.monotonic() + 120
        while not (all(held[i] > 0 for i in range(workers)) and sum(held[:]) == partitions):
            dead = [m.exitcode for m in members if not m.is_alive()]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"the group did not settle: {held[:]}, exits {dead}")
            time.sleep(0.1)
        go.set()
        prod = producer_out.get(timeout=duration_s + 120)
        drain.set()
        reports = [results.get(timeout=300) for _ in members]
        producer.join(30)
        for m in members:
            m.join(30)
    finally:
        for p in (producer, *members):
            if p.is_alive():
                p.kill()
        log.close()
        log.drop()
        shutil.rmtree(work, ignore_errors=True)
    steady = np.asarray([v for r in reports for v in r.pop("steady_lags")], dtype=np.float64)
    p50, p95, p99 = (np.percentile(steady, [50, 95, 99]) * 1000) if steady.size else (0, 0, 0)
    for r in reports:
        r["events_per_cpu_s"] = round(r["events"] / r["cpu_s"], 1) if r["cpu_s"] else None
    return {
        "workers": workers,
        "partitions": partitions,
        "target_rate": rate,
        "duration_s": duration_s,
        "events": prod["sent"],
        "rejected": prod["rejected"],
        "events_per_s": round(prod["sent"] / prod["seconds"], 1),
        "lag_p50_ms": round(float(p50), 1),
        "lag_p95_ms": round(float(p95), 1),
        "lag_p99_ms": round(float(p99), 1),
        "lag_max_ms": round(float(steady.max()) * 1000, 1) if steady.size else None,
        "lag_events_measured": int(steady.size),
        "lag_quantiles_ms": {
            str(q): round(float(v) * 1000, 2)
            for q, v in zip(CDF_QUANTILES, np.quantile(steady, CDF_QUANTILES), strict=True)
        }
        if steady.size
        else {},
        "members": reports,
        "target_lag_p99_ms": TARGET_LAG_P99_MS,
        "meets_target": bool(steady.size and p99 <= TARGET_LAG_P99_MS),
    }


def run_stream_bench(
    rates: Sequence[float] = (5_000, 20_000),
    workers: Sequence[int] = (1, 2),
    duration_s: float = 20.0,
    *,
    bootstrap: str | None = None,
    users: int = 100_000,
    partitions: int = PARTITIONS,
    sink: str = "memory",
) -> dict[str, Any]:
    """Every (rate, workers) pair; a local tansu broker unless ``bootstrap`` is given."""
    from feedstack.storage.tansu import LocalBroker

    broker = None
    if bootstrap is None:
        broker = LocalBroker().start()
        bootstrap = broker.bootstrap
    runs = []
    try:
        for rate in rates:
            for n in workers:
                runs.append(
                    run_stream_run(
                        bootstrap,
                        n,
                        rate,
                        duration_s,
                        users=users,
                        partitions=partitions,
                        sink=sink,
                    )
                )
    finally:
        if broker is not None:
            broker.stop()
    per_core = [m["events_per_cpu_s"] for r in runs for m in r["members"] if m["events_per_cpu_s"]]
    return {
        "broker": "tansu (local, memory storage)" if broker is not None else bootstrap,
        "users": users,
        "sink": sink,
        "runs": {f"{r['workers']}w_{int(r['target_rate'])}eps": r for r in runs},
        # The planner's input: events one worker process applies per CPU-second (median).
        "worker_events_per_core_s": round(float(np.median(per_core)), 1) if per_core else None,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
