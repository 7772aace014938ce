"""The candidate build on Spark, its cache writes partitioned by region shard.

The driver lists the log's users with their region (the shard that serves them); Spark groups
them by (shard, piece) so that every task holds users of one shard only, and each task runs the
local build's per-batch function (``CandidateJob.lists``, train/candidate_cache.py) on its users
with the same model and log (loaded once per Python worker from the project folder, which a
cluster shares). A user's list depends on that user alone (the sources score row by row; the
compiled top-k and products have a fixed order per row), so the lists equal the local build's
to the bit: tests/batch/ compares the encoded bytes.

Writes: with a Redis cache (``redis://...``) each task writes its own users straight into Redis,
with the Redis backend's own ``put_many`` (key ``{prefix}:cand:<user>``, the layout the server
reads): the writes of a shard come from its tasks only. Other caches (SQLite, memory) live with
the driver: the tasks return the encoded lists and the driver writes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from feedstack.batch.engine import Engine
from feedstack.core.errors import DataError
from feedstack.core.spec import load_spec
from feedstack.storage.candidate_cache import (
    CandidateCache,
    RedisCandidateCache,
    encode,
    open_candidate_cache,
)
from feedstack.storage.candidate_codec import Catalog
from feedstack.storage.urls import parse_backend_url

if TYPE_CHECKING:
    from feedstack.train.candidate_cache import CandidateJob

OUT_SCHEMA = pa.schema(
    [
        ("shard", pa.string()),
        ("users", pa.int64()),
        ("rows", pa.int64()),
        ("bytes", pa.int64()),
        ("seconds", pa.float64()),
        ("user_id", pa.list_(pa.string())),
        ("payload", pa.list_(pa.binary())),
    ]
)
_jobs: dict[tuple[str, str, float], CandidateJob] = {}  # per Python worker: loaded once


def shard_names(regions: tuple[str, ...], user_region: np.ndarray[Any, Any]) -> list[str]:
    """Each user's region shard: the region name, or "unknown" before a profile."""
    return [regions[r] if r >= 0 else "unknown" for r in user_region.tolist()]


def _job(project: str, version: str, at_s: float) -> CandidateJob:
    from feedstack.train.candidate_cache import load_job

    key = (project, version, at_s)
    job = _jobs.get(key)
    if job is None:
        _jobs.clear()  # one model at a time per worker
        job = load_job(Path(project), version, at_s, sync=False)
        _jobs[key] = job
    return job


def run_shard(
    table: pa.Table,
    *,
    project: str,
    version: str,
    at_s: float,
    cache_url: str | None,
    discard: bool = False,
) -> pa.Table:
    """One task: the lists of its users (one shard), written to Redis or returned encoded
    (``discard``: encoded and counted only, for the scale benchmark)."""
    began = time.perf_counter()
    job = _job(project, version, at_s)
    shard = str(table["shard"][0].as_py())
    users = np.sort(table["user"].to_numpy().astype(np.int64))
    cache = RedisCandidateCache(cache_url, _prefix(cache_url), 30.0) if cache_url else None
    n = rows = written = 0
    ids: list[str] = []
    payloads: list[bytes] = []
    try:
        for start in range(0, users.size, job.batch):
            lists = job.lists(users[start : start + job.batch])
            n += len(lists)
            rows += sum(len(c) for c in lists.values())
            if cache is not None:
                written += cache.put_many(lists)
            else:
                for user, c in lists.items():
                    raw = encode(c)
                    written += len(raw)
                    if not discard:
                        ids.append(user)
                        payloads.append(raw)
    finally:
        if cache is not None:
            cache.close()
    return pa.Table.from_pylist(
        [
            {
                "shard": shard,
                "users": n,
                "rows": rows,
                "bytes": written,
                "seconds": time.perf_counter() - began,
                "user_id": ids,
                "payload": payloads,
            }
        ],
        schema=OUT_SCHEMA,
    )


def _prefix(url: str) -> str:
    parsed = parse_backend_url(url, "candidate_cache", ("redis",), Path("."))
    return parsed.prefix


def _shard_fn(
    project: str, version: str, at_s: float, cache_url: str | None, discard: bool
) -> Callable[[pa.Table], pa.Table]:
    # Spark picks the calling convention from the type hints: Table in, Table out.
    def fn(table: pa.Table) -> pa.Table:
        return run_shard(
            table,
            project=project,
            version=version,
            at_s=at_s,
            cache_url=cache_url,
            discard=discard,
        )

    return fn


def spark_candidate_build(
    engine: Engine,
    project: Path,
    version: str | None = None,
    cache: CandidateCache | None = None,
    at_s: float | None = None,
    say: Callable[[str], None] | None = None,
    discard: bool = False,
) -> dict[str, Any]:
    """``build_candidate_cache`` on Spark: same lists, written by region shard (``discard``:
    the tasks encode and count the lists and store none: the scale benchmark)."""
    from feedstack.train.candidate_cache import load_job

    began = time.perf_counter()
    spec = load_spec(project)
    job = load_job(project.resolve(), version, at_s)
    log = job.log
    loaded_s = time.perf_counter() - began
    own = cache is None
    target = cache or open_candidate_cache(spec.backends.candidate_cache, project, timeout_s=30)
    scheme = target.url.split("://", 1)[0]
    cache_url = target.url if scheme == "redis" else None
    n_pieces = engine.n_partitions()
    user_idx = np.arange(log.n_users, dtype=np.int64)
    frame = engine.session().createDataFrame(
        pa.table(
            {
                "user": user_idx,
                "shard": shard_names(log.regions, log.user_region),
                "piece": user_idx % n_pieces,
            }
        )
    )
    fn = _shard_fn(str(project.resolve()), job.version_folder, job.at_s, cache_url, discard)
    out_schema = (
        "shard string, users long, rows long, bytes long, seconds double, "
        "user_id array<string>, payload array<binary>"
    )
    result = frame.groupBy("shard", "piece").applyInArrow(fn, out_schema)
    shards: dict[str, dict[str, float]] = {}
    users = rows = written = 0
    task_s = 0.0
    try:
        for row in _rows(result):
            s = shards.setdefault(row["shard"], {"users": 0, "tasks": 0})
            s["users"] += int(row["users"])
            s["tasks"] += 1
            users += int(row["users"])
            rows += int(row["rows"])
            task_s += float(row["seconds"])
            if cache_url is None and not discard and row["user_id"]:
                lists = dict(zip(row["user_id"], row["payload"], strict=True))
                written += _put_encoded(target, lists, job.catalog)
            else:
                written += int(row["bytes"])
            if say is not None:
                say(f"{users}/{log.n_users} users")
    finally:
        if own:
            target.close()
    seconds = time.perf_counter() - began
    return {
        "version": job.version_folder,
        "cache": target.url,
        "at_s": job.at_s,
        "users": users,
        "users_in_log": log.n_users,
        "articles": log.n_items,
        "articles_added": job.articles_added,
        "candidates_per_user": round(rows / users, 1) if users else 0.0,
        "bytes_per_user": round(written / users, 1) if users else 0.0,
        "bytes": written,
        "seconds": round(seconds, 3),
        "load_seconds": round(loaded_s, 3),
        "task_seconds": round(task_s, 3),
        "written_by": "discarded (counted)"
        if discard
        else "tasks, per region shard"
        if cache_url
        else "driver",
        "shards": {k: {kk: int(vv) for kk, vv in v.items()} for k, v in sorted(shards.items())},
        **engine.describe(),
    }


def _rows(result: Any) -> Iterator[dict[str, Any]]:
    for row in result.toLocalIterator():
        yield row.asDict()


def _put_encoded(target: CandidateCache, lists: dict[str, bytes], catalog: Catalog) -> int:
    """Write lists the tasks encoded (ids indexing the job's ``catalog``): decoded and re-put
    through the cache's own ``put_many``, which stores the catalog and writes a decoded list's
    own bytes (tests/contract/test_candidate_cache.py)."""
    from feedstack.storage.candidate_cache import decode

    def resolve(cid: str) -> Catalog:
        if cid != catalog.id:
            raise DataError(f"a task encoded against catalog {cid}, the job's is {catalog.id}")
        return catalog

    return target.put_many({u: decode(bytes(raw), resolve) for u, raw in lists.items()})
