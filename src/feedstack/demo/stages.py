"""The demo as a list of stages; each returns a JSON-able result and the run stops at a failure.

A stage is a plain function of the shared ``DemoContext``; the runner shows progress, times each
stage and writes ``demo.json``. Later capabilities join by adding a stage here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from feedstack.core.spec import load_spec, write_default_spec
from feedstack.demo import abtest, online
from feedstack.demo.backends import Backends
from feedstack.demo.replicas import stage_replicas
from feedstack.ingest.pipeline import Ingestor
from feedstack.ingest.readers import check_inputs, read_events
from feedstack.world import WorldConfig, write_world


@dataclass
class DemoContext:
    out: Path
    users: int
    articles: int
    days: int
    seed: int
    online_seconds: float = 20.0  # each online measurement (live traffic, load, freshness)
    results: dict[str, Any] = field(default_factory=dict)
    backends: Backends = field(default_factory=Backends)  # engines (demo/backends.py)

    @property
    def project(self) -> Path:
        return self.out / "project"

    @property
    def world_dir(self) -> Path:
        return self.out / "world"


def stage_project(ctx: DemoContext) -> dict[str, Any]:
    path = write_default_spec(ctx.project, overwrite=True)
    urls = ctx.backends.apply(ctx.project)
    return {"spec": str(path), "backends": urls, "engines": ctx.backends.engines()}


def stage_stream(ctx: DemoContext) -> dict[str, Any]:
    """Scale mode: two feature workers in a Kafka consumer group split the partitions while the
    ingest pipeline appends 5,000 events/s; event -> online feature lag."""
    from feedstack.bench.stream_scale import run_stream_run
    from feedstack.demo.backends import StreamPart

    parts = [p for p in ctx.backends.parts if isinstance(p, StreamPart)]
    if not parts or parts[0].broker is None:
        return {"skipped": "embedded mode (run with --backends scale)"}
    res = run_stream_run(parts[0].broker.bootstrap, 2, 5_000, min(ctx.online_seconds, 15.0))
    online._record(ctx, "bench-stream", {"runs": {"2w_5000eps": res}})
    keep = ("workers", "partitions", "events", "lag_p50_ms", "lag_p99_ms", "meets_target")
    return {k: res[k] for k in keep} | {
        "members": [
            {k: m[k] for k in ("member", "partitions", "events", "events_per_cpu_s")}
            for m in res["members"]
        ]
    }


def _engine(ctx: DemoContext) -> Any:
    from feedstack.batch.engine import Engine

    return Engine.from_spec(load_spec(ctx.project))


def stage_world(ctx: DemoContext) -> dict[str, Any]:
    config = WorldConfig(users=ctx.users, articles=ctx.articles, days=ctx.days, seed=ctx.seed)
    summary = write_world(config, ctx.world_dir, "jsonl", now=datetime.now(UTC))
    return {
        k: summary[k] for k in ("events", "users", "articles", "days", "counts", "ctr", "seconds")
    }


def stage_ingest(ctx: DemoContext) -> dict[str, Any]:
    spec = load_spec(ctx.project)
    ingestor = Ingestor.from_spec(spec, ctx.project)
    try:
        [(path, fmt)] = check_inputs([ctx.world_dir / "events.jsonl"], None)
        report = ingestor.ingest(read_events(path, fmt))
        again = ingestor.ingest(read_events(path, fmt))  # idempotence, shown on real data
    finally:
        ingestor.close()
    if report.rejected or again.accepted:
        raise RuntimeError(f"ingest: {report.rejected} rejected, {again.accepted} re-accepted")
    return {
        "accepted": report.accepted,
        "rejected": report.rejected,
        "events_per_s": report.to_dict()["events_per_s"],
        "offline_exported": report.offline_exported,
        "reingest_duplicates": again.duplicates,
    }


def stage_summary(ctx: DemoContext) -> dict[str, Any]:
    """What the offline copy says about the world, straight from Parquet with DuckDB."""
    import duckdb

    glob = str(ctx.project / "data" / "offline" / "events" / "*" / "*.parquet")
    con = duckdb.connect()
    counts = dict(
        con.execute(
            f"SELECT type, count(*) FROM read_parquet('{glob}') GROUP BY 1 ORDER BY 1"
        ).fetchall()
    )
    by_pos = con.execute(
        f"""
        WITH shown AS (
            SELECT count(*) AS n FROM read_parquet('{glob}') WHERE type = 'impression'
        )
        SELECT position, count(*)::DOUBLE / (SELECT n FROM shown) AS ctr
        FROM read_parquet('{glob}') WHERE type = 'click' AND position IS NOT NULL
        GROUP BY 1 ORDER BY 1
        """
    ).fetchall()
    days = con.execute(
        f"SELECT count(DISTINCT date) FROM read_parquet('{glob}', hive_partitioning = true)"
    ).fetchone()
    con.close()
    return {
        "events_by_type": counts,
        "ctr_by_position": [round(c, 4) for _, c in by_pos],
        "partitions_by_date": days[0] if days else 0,
    }


def stage_features(ctx: DemoContext) -> dict[str, Any]:
    """Feast repo applied, the whole history through the feature aggregator (the same code the
    streaming worker runs) into Feast's offline and online stores, and a hot-path lookup."""
    from feedstack.features.backfill import backfill_log
    from feedstack.features.feast_store import open_feature_sink
    from feedstack.storage.eventlog import open_event_log

    engine = _engine(ctx)
    if engine.is_spark:
        return _features_on_engine(ctx, engine)
    spec = load_spec(ctx.project)
    sink = open_feature_sink(ctx.project)
    log = open_event_log(spec.backends.event_log, ctx.project)
    try:
        ckpt = ctx.project / "data" / "features" / "worker-checkpoint.npz"
        agg, report = backfill_log(log, sink, checkpoint_path=ckpt)
        user = agg.users.ids[0]
        t = time.perf_counter()
        [row] = sink.get_online("user_features", [user])
        lookup_ms = (time.perf_counter() - t) * 1000
    finally:
        log.close()
        sink.close()
    return {
        **{k: v for k, v in report.to_dict().items() if k != "checkpoint"},
        "users": len(agg.users),
        "articles": len(agg.articles),
        "feast_repo": str(sink.repo.path),
        "sample_user": user,
        "sample_user_features": row,
        "lookup_ms": round(lookup_ms, 3),
    }


def _features_on_engine(ctx: DemoContext, engine: Any) -> dict[str, Any]:
    """The backfill on the spec's engine (Spark): the same aggregator per group of entities,
    offline rows written by the tasks, final rows into Feast's online store."""
    import pyarrow.compute as pc

    from feedstack.batch import jobs
    from feedstack.features.feast_store import open_feature_sink

    sink = open_feature_sink(ctx.project)
    try:
        report = jobs.backfill(
            ctx.project, engine, sink, source="parquet", offline_root=sink.repo.offline_root
        )
        table = jobs.synced_offline(ctx.project).read_table()
        users = table.filter(pc.equal(table["type"], "user_profile"))["user_id"]
        user = str(users[0].as_py())
        t = time.perf_counter()
        [row] = sink.get_online("user_features", [user])
        lookup_ms = (time.perf_counter() - t) * 1000
    finally:
        sink.close()
    return {
        **report,
        "feast_repo": str(sink.repo.path),
        "sample_user": user,
        "sample_user_features": row,
        "lookup_ms": round(lookup_ms, 3),
    }


def stage_training_data(ctx: DemoContext) -> dict[str, Any]:
    """Point-in-time training rows: every logged impression x shown item, features as of then."""
    engine = _engine(ctx)
    if engine.is_spark:
        import pyarrow.dataset as ds

        from feedstack.batch import jobs

        result = jobs.training_rows(ctx.project, engine)
        table = ds.dataset(result["out"], format="parquet").to_table(
            columns=["clicked", "a_as_of_s"]
        )
        return {
            "rows": result["rows"],
            "click_rate": round(float(table["clicked"].to_numpy().mean()), 4),
            "rows_with_article_features": round(
                1 - table["a_as_of_s"].null_count / max(table.num_rows, 1), 4
            ),
            "engine": result["engine"],
            "seconds": result["seconds"],
        }
    from feedstack.features.feast_repo import FeastRepo
    from feedstack.features.training import build_training_table

    repo = FeastRepo.from_spec(ctx.project)
    table = build_training_table(
        str(ctx.project / "data" / "offline" / "events" / "*" / "*.parquet"),
        repo.source_dir("article_stats"),
        repo.source_dir("user_features"),
    )
    clicked = table["clicked"].to_numpy()
    known = 1 - table["a_as_of_s"].null_count / max(table.num_rows, 1)
    return {
        "rows": table.num_rows,
        "columns": len(table.column_names),
        "click_rate": round(float(clicked.mean()), 4) if table.num_rows else 0.0,
        "rows_with_article_features": round(float(known), 4),
    }


def stage_train(ctx: DemoContext) -> dict[str, Any]:
    """The two-stage news recommender: candidates, LambdaRank on debiased labels, model selection
    under the latency budget; scored on held-out logged clicks and on the world's ground truth."""
    from feedstack.storage import measurements
    from feedstack.train.project import train_project
    from feedstack.world import NewsWorld, load_world_config

    oracle = NewsWorld(load_world_config(ctx.world_dir)).expected_clicks_many
    hours = 24.0 if ctx.days >= 3 else ctx.days * 8.0
    result = train_project(
        ctx.project, warmup_hours=hours, eval_hours=hours, repeats=100, oracle=oracle, recipe="news"
    )
    measurements.save(ctx.project / "measurements", measurements.record("train", result))
    keep = (
        "recipe",
        "version",
        "model_dir",
        "selected",
        "budget_ms",
        "lift",
        "selection",
        "sources",
    )
    return {k: result[k] for k in keep if k in result} | {
        "candidate_recall": result["evaluation"].get("candidate_recall"),
    }


Stage = tuple[str, str, Callable[[DemoContext], dict[str, Any]]]
STAGES: list[Stage] = [
    ("project", "create the project (feedstack.yaml, reference case)", stage_project),
    ("world", "generate the simulated news world", stage_world),
    ("ingest", "ingest it: validate, event log, dead letters, Parquet copy", stage_ingest),
    ("summary", "summarize the offline copy with DuckDB", stage_summary),
    ("features", "features: Feast apply, backfill online + offline, a lookup", stage_features),
    ("training_data", "point-in-time training data from the feature rows", stage_training_data),
    ("train", "train the two-stage recommender and select a ranker", stage_train),
    ("candidates", "batch job: top candidates per user into the cache", online.stage_candidates),
    ("register", "register the model in MLflow with its lineage", online.stage_register),
    ("serve", "serve over HTTP; live simulated users click and post events", online.stage_serve),
    ("abtest", "A/B through feedstack serve: champion vs a challenger", abtest.stage_abtest),
    (
        "serve_bench",
        "load benchmark at 300 requests/s (separate process)",
        online.stage_serve_bench,
    ),
    (
        "replicas",
        "2 replicas sharded by region behind HAProxy; the planner checked",
        stage_replicas,
    ),
    ("freshness", "event -> online feature lag at 5,000 events/s", online.stage_freshness),
    ("stream", "scale mode: 2 workers in a Kafka consumer group", stage_stream),
    ("rollout", "canaries: bad one rolled back, better one promoted; A/B", online.stage_rollout),
    ("monitor", "alert rules + promtool; drift and slowdown detection", online.stage_monitor),
    ("report", "capacity and cost plan; the design report", online.stage_report),
]


def run_stage(ctx: DemoContext, name: str, fn: Callable[[DemoContext], dict[str, Any]]) -> float:
    t = time.perf_counter()
    ctx.results[name] = fn(ctx)
    return time.perf_counter() - t
