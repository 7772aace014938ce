"""The batch jobs by engine: one entry point each, the local code or the same code on Spark.

``engine`` is an ``Engine`` (batch/engine.py): ``local`` runs the job in this process exactly as
before; ``local[N]`` or ``spark://host:port`` runs it on Spark (backfill.py, training_rows.py,
candidates.py). Every result says which engine ran it.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from feedstack.batch.engine import Engine
from feedstack.core.errors import InputError
from feedstack.core.spec import load_spec
from feedstack.features.sink import FeatureSink
from feedstack.storage.candidate_cache import CandidateCache
from feedstack.storage.deadletter import Rejection, open_dead_letter
from feedstack.storage.eventlog import open_event_log
from feedstack.storage.offline import ParquetOfflineStore, open_offline_store

TRAINING_ROWS = Path("data") / "training" / "rows"


def synced_offline(project: Path) -> ParquetOfflineStore:
    """The project's offline copy, brought up to date with the event log first."""
    spec = load_spec(project)
    store = open_offline_store(spec.backends.offline_store, project)
    log = open_event_log(spec.backends.event_log, project)
    try:
        store.sync(log)
    finally:
        log.close()
    return store


def backfill(
    project: Path,
    engine: Engine,
    sink: FeatureSink,
    *,
    source: str = "log",
    offline_root: Path | None = None,
    checkpoint_path: Path | None = None,
) -> dict[str, Any]:
    """Every feature over the whole log. Local: from the log or its Parquet copy, with a worker
    checkpoint. Spark: from the Parquet copy (synced first), snapshot rows written by the tasks
    under ``offline_root`` (a scratch folder when None: rows computed and dropped), no
    checkpoint (there is no single aggregator state on Spark)."""
    from feedstack.features.backfill import log_batches, parquet_batches, run_backfill

    if source not in ("log", "parquet"):
        raise InputError(f"--from must be log or parquet, got {source!r}")
    spec = load_spec(project)
    if not engine.is_spark:
        log = open_event_log(spec.backends.event_log, project)
        dead_letter = open_dead_letter(spec.backends.dead_letter, project)
        quarantined: list[int] = []

        def set_aside(rejected: list[Rejection]) -> None:
            dead_letter.write(rejected)
            quarantined.append(len(rejected))

        try:
            if source == "parquet":
                batches = parquet_batches(open_offline_store(spec.backends.offline_store, project))
            else:
                batches = log_batches(log, on_rejected=set_aside)
            _, report = run_backfill(batches, sink, checkpoint_path=checkpoint_path)
        finally:
            log.close()
            dead_letter.close()
        out = {**report.to_dict(), "quarantined": sum(quarantined), "source": source}
        return {**out, **engine.describe()}

    from feedstack.batch.backfill import spark_backfill

    store = synced_offline(project)
    root = offline_root or Path(tempfile.mkdtemp(prefix="feedstack-backfill-"))
    try:
        report = spark_backfill(engine, store.events_dir, sink, root)
    finally:
        if offline_root is None:
            shutil.rmtree(root, ignore_errors=True)
    out = report.to_dict()
    out.update(source="parquet", checkpoint=None, **engine.describe())
    out["note"] = "no worker checkpoint on Spark: a worker started now replays the log"
    return out


def training_rows(
    project: Path,
    engine: Engine,
    out: Path | None = None,
    *,
    start_s: float | None = None,
    end_s: float | None = None,
) -> dict[str, Any]:
    """The ranker's point-in-time training rows as a Parquet folder (default
    ``data/training/rows`` in the project), from the offline events and the offline feature
    rows (run ``feedstack features backfill`` first)."""
    from feedstack.features.feast_repo import FeastRepo

    began = time.perf_counter()
    repo = FeastRepo.from_spec(project)
    articles, users = repo.source_dir("article_stats"), repo.source_dir("user_features")
    for folder in (articles, users):
        if not any(folder.glob("*.parquet")):
            raise InputError(
                f"no offline feature rows in {folder}; run `feedstack features backfill` first"
            )
    store = synced_offline(project)
    target = out or project / TRAINING_ROWS
    if engine.is_spark:
        from feedstack.batch.training_rows import write_training_rows

        result = write_training_rows(
            engine, store.events_dir, articles, users, target, start_s=start_s, end_s=end_s
        )
    else:
        import pyarrow.parquet as pq

        from feedstack.features.training import build_training_table

        table = build_training_table(
            str(store.events_dir / "*" / "*.parquet"),
            articles,
            users,
            start_s=start_s,
            end_s=end_s,
        )
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        pq.write_table(table, target / "part-00000.parquet")
        result = {"rows": table.num_rows, "out": str(target)}
    result["seconds"] = round(time.perf_counter() - began, 3)
    return {**result, **engine.describe()}


def candidate_build(
    project: Path,
    engine: Engine,
    version: str | None = None,
    cache: CandidateCache | None = None,
    say: Any = None,
) -> dict[str, Any]:
    """Every user's candidates into the cache (``feedstack candidates build``)."""
    if engine.is_spark:
        from feedstack.batch.candidates import spark_candidate_build

        return spark_candidate_build(engine, project, version, cache, say=say)
    from feedstack.train.candidate_cache import build_candidate_cache

    return {**build_candidate_cache(project, version, cache, say=say), **engine.describe()}
