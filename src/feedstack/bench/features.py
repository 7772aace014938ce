"""Feature store benchmark: online write throughput and the single-entity lookup of serving.

Writes: ~5,000 user-feature rows (8 affinity topics, up to 20 recent clicks: the shape the
aggregator produces) into Feast's SQLite and Redis online stores by each of the ways Feast
offers: ``FeatureStore.push(to=ONLINE)``, ``write_to_online_store``, the provider's
``online_write_batch`` with Feast's Arrow->proto conversion, and ``FeastFeatureStore
.write_online`` (online_write_batch with our protos: what the stream worker uses). Every run
writes newer event times than the last, so Redis's newest-wins check never skips a row.
Lookups: one random user per call, p50/p99 in ms, ``get_online_features`` (Feast's SDK) against
``FeastFeatureStore.get_online`` (Redis: one HMGET on Feast's layout; SQLite: one SELECT), with
a bare HMGET through redis-py as the floor; Redis over loopback.
"""

from __future__ import annotations

import contextlib
import gc
import tempfile
import time
import uuid
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from feedstack.features.definitions import RECENT_CLICKS, TOP_TOPICS, USER_FEATURES
from feedstack.features.rows import FeatureRows

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def user_rows(n: int, as_of_s: float, seed: int = 0) -> FeatureRows:
    """``n`` user-feature rows shaped like the aggregator's (lists of realistic length)."""
    rng = np.random.default_rng(seed)
    topics = [f"topic{i}" for i in range(40)]
    keys = [f"u{i}" for i in range(n)]
    clicks = rng.integers(0, RECENT_CLICKS + 1, n)
    return FeatureRows(
        USER_FEATURES.name,
        keys,
        np.full(n, as_of_s),
        {
            "region": [("eu", "us", "apac")[i % 3] for i in range(n)],
            "affinity_topics": [
                [topics[j] for j in rng.choice(40, TOP_TOPICS, replace=False)] for _ in range(n)
            ],
            "affinity_scores": [
                np.sort(rng.random(TOP_TOPICS).astype(np.float32))[::-1] for _ in range(n)
            ],
            "recent_clicks": [[f"a{rng.integers(1_000_000)}" for _ in range(c)] for c in clicks],
            "impressions_24h": rng.random(n).astype(np.float32) * 50,
            "clicks_24h": rng.random(n).astype(np.float32) * 5,
        },
    )


def _percentiles_ms(samples_s: list[float]) -> dict[str, float]:
    a = np.asarray(samples_s) * 1e3
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 4),
        "p99_ms": round(float(np.percentile(a, 99)), 4),
        "mean_ms": round(float(a.mean()), 4),
    }


def _write_methods(store: Any) -> dict[str, Callable[[FeatureRows], None]]:
    from feast.data_source import PushMode
    from feast.utils import _convert_arrow_to_proto

    fs = store.feast
    fv = store.feature_view(USER_FEATURES.name)
    join_keys = {e.name: e.dtype.to_value_type() for e in fv.entity_columns}

    def owb_feast(fr: FeatureRows) -> None:
        rows = _convert_arrow_to_proto(fr.to_arrow(), fv, join_keys)
        fs._get_provider().online_write_batch(fs.config, fv, rows, None)

    return {
        "push_online": lambda fr: fs.push(
            "user_features_push", fr.to_arrow().to_pandas(), to=PushMode.ONLINE
        ),
        "write_to_online_store": lambda fr: fs.write_to_online_store(
            USER_FEATURES.name, fr.to_arrow().to_pandas()
        ),
        "online_write_batch_feast_protos": owb_feast,
        "feedstack_write_online": lambda fr: store.write_online([fr]),
    }


def _measure_writes(store: Any, rows: int, repeats: int, t0: float) -> dict[str, Any]:
    methods = _write_methods(store)
    best: dict[str, float] = {}
    step = 0
    for _ in range(repeats):  # interleaved, best of N: the machine is shared and noisy
        for name, write in methods.items():
            step += 1
            fr = user_rows(rows, t0 + step, seed=step)
            t = time.perf_counter()
            write(fr)
            secs = time.perf_counter() - t
            best[name] = min(best.get(name, secs), secs)
    out: dict[str, Any] = {name: round(rows / s) for name, s in best.items()}
    out["unit"] = f"rows/s (best of {repeats})"
    out["convert_only"] = _measure_conversion(store, rows, repeats)
    return out


def _measure_conversion(store: Any, rows: int, repeats: int) -> dict[str, Any]:
    """Rows -> Feast ValueProtos alone: Feast's Arrow converter (entity keys and times
    included) against ours (feature values only; keys and times cost about as much again)."""
    from feast.utils import _convert_arrow_to_proto

    from feedstack.features.feast_codec import value_protos

    fv = store.feature_view(USER_FEATURES.name)
    join_keys = {e.name: e.dtype.to_value_type() for e in fv.entity_columns}
    fr = user_rows(rows, time.time())
    best = {"feast_arrow_to_proto": float("inf"), "feedstack_value_protos": float("inf")}
    for _ in range(repeats):
        t = time.perf_counter()
        _convert_arrow_to_proto(fr.to_arrow(), fv, join_keys)
        best["feast_arrow_to_proto"] = min(best["feast_arrow_to_proto"], time.perf_counter() - t)
        t = time.perf_counter()
        value_protos(USER_FEATURES, fr)
        best["feedstack_value_protos"] = min(
            best["feedstack_value_protos"], time.perf_counter() - t
        )
    return {name: round(rows / s) for name, s in best.items()}


def _measure_lookups(store: Any, n_users: int, lookups: int) -> dict[str, Any]:
    """p50/p99 of one-user lookups: Feast's SDK, our direct read, and (Redis) the floor of a
    bare HMGET of the same fields through redis-py, all interleaved on the same users."""
    fs = store.feast
    refs = [f"{USER_FEATURES.name}:{f}" for f in USER_FEATURES.feature_names]
    rng = np.random.default_rng(7)
    users = [f"u{i}" for i in rng.integers(0, n_users, lookups)]
    floor = _redis_floor(store) if store.repo.online_kind == "redis" else None
    for u in users[:50]:  # warm up connections, registry cache, proto classes
        fs.get_online_features(features=refs, entity_rows=[{"user_id": u}]).to_dict()
        store.get_online(USER_FEATURES.name, [u])
    samples: dict[str, list[float]] = {"feast_get_online_features": [], "feedstack_get_online": []}
    if floor is not None:
        samples["redis_hmget_floor"] = []
    gc.collect()
    for u in users:  # interleaved so every path sees the same machine noise
        t = time.perf_counter()
        fs.get_online_features(features=refs, entity_rows=[{"user_id": u}]).to_dict()
        samples["feast_get_online_features"].append(time.perf_counter() - t)
        t = time.perf_counter()
        store.get_online(USER_FEATURES.name, [u])
        samples["feedstack_get_online"].append(time.perf_counter() - t)
        if floor is not None:
            t = time.perf_counter()
            floor(u)
            samples["redis_hmget_floor"].append(time.perf_counter() - t)
    out: dict[str, Any] = {"lookups": lookups}
    out.update({name: _percentiles_ms(s) for name, s in samples.items()})
    return out


def _redis_floor(store: Any) -> Callable[[str], Any]:
    """A bare HMGET of the user's fields on Feast's key, nothing decoded: the floor."""
    from feast.infra.online_stores.helpers import _mmh3

    from feedstack.storage.urls import redis_client

    client = redis_client(store.repo.online_url)
    fields = [_mmh3(f"{USER_FEATURES.name}:{f}") for f in USER_FEATURES.feature_names]
    fields.append(f"_ts:{USER_FEATURES.name}".encode())
    project = store.repo.project.encode()

    def hmget(user: str) -> Any:
        return client.hmget(store._entity_key(USER_FEATURES, user) + project, fields)

    return hmget


def run_feature_lookup_bench(
    redis_url: str | None = DEFAULT_REDIS_URL,
    rows: int = 5_000,
    lookups: int = 2_000,
    repeats: int = 3,
) -> dict[str, Any]:
    """Online write throughput and single-user lookup latency, SQLite and (given a URL) Redis."""
    from feedstack.features.feast_cli import apply_repos
    from feedstack.features.feast_repo import FeastRepo
    from feedstack.features.feast_store import FeastFeatureStore

    out: dict[str, Any] = {"rows": rows, "feast_version": metadata.version("feast")}
    with tempfile.TemporaryDirectory(prefix="fsbench-feast-") as tmp:
        repos = {"sqlite": FeastRepo(Path(tmp) / "sqlite", project="bench")}
        if redis_url is not None:
            project = f"fsbench_{uuid.uuid4().hex[:8]}"
            repos["redis"] = FeastRepo(Path(tmp) / "redis", project=project, online_url=redis_url)
        t = time.perf_counter()
        apply_repos(list(repos.values()))
        out["apply_s"] = round(time.perf_counter() - t, 2)
        t0 = time.time() - 3_600.0
        for kind, repo in repos.items():
            store = FeastFeatureStore(repo)
            try:
                out[f"write_{kind}"] = _measure_writes(store, rows, repeats, t0)
                out[f"lookup_{kind}"] = _measure_lookups(store, rows, lookups)
            finally:
                if kind == "redis":
                    with contextlib.suppress(Exception):
                        store.teardown()
                store.close()
    return out
