"""FeastFeatureStore against the real Feast: apply, push, read, materialize, serve, PIT join.

One applied repo per online store for the whole module (``feast apply`` takes seconds): the
SQLite one through ``feedstack features apply``, the Redis one through the ``feast`` CLI, in
parallel. Redis is the server at REDIS_URL under a unique Feast project (Feast ends every key
with the project name); without a server the Redis cases skip, and fail under CI=true.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from feedstack.cli.main import app
from feedstack.core.errors import BackendUnavailable, ConfigError, InputError
from feedstack.core.spec import write_default_spec
from feedstack.features.definitions import VIEWS, VIEWS_BY_NAME
from feedstack.features.feast_repo import FeastRepo, generate_repo
from feedstack.features.feast_store import FeastFeatureStore, open_feature_sink
from feedstack.features.rows import FeatureRows
from feedstack.features.sink import MemorySink

pytestmark = [
    pytest.mark.slow,
    # ibis 12 calls DuckDB's fetch_arrow_table(), deprecated in duckdb 1.5 (Feast's DuckDB
    # offline store goes through ibis): third-party, harmless.
    pytest.mark.filterwarnings(r"ignore:fetch_arrow_table\(\) is deprecated:DeprecationWarning"),
]

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
FEAST = str(Path(sys.executable).parent / "feast")
NOW = time.time()
T_OLD = NOW - 3 * 3600.0  # rows are recent: materialize's first run looks one ttl back
runner = CliRunner()


def _redis_reachable() -> str | None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but Redis at {REDIS_URL} is unreachable: {exc}")
        return None
    return REDIS_URL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rows_for(view: str, keys: list[str], as_of_s: float, seed: int = 0) -> FeatureRows:
    """Known values of every dtype, lists of varying length including empty ones."""
    v = VIEWS_BY_NAME[view]
    rng = np.random.default_rng(seed)
    n = len(keys)
    cols: dict[str, Any] = {}
    for f in v.features:
        if f.dtype == "float32":
            cols[f.name] = (rng.random(n) * 100).astype(np.float32)
        elif f.dtype == "int64":
            cols[f.name] = rng.integers(0, 2**40, n)
        elif f.dtype == "string":
            cols[f.name] = [f"{f.name}-{k}-{seed}" for k in keys]
        elif f.dtype == "float32_list":
            cols[f.name] = [rng.random(i % 4).astype(np.float32) for i in range(n)]
        else:
            cols[f.name] = [[f"s{seed}-{i}-{j}" for j in range(i % 4)] for i in range(n)]
    return FeatureRows(view, keys, np.full(n, as_of_s), cols)


def expected(fr: FeatureRows) -> dict[str, dict[str, Any]]:
    out = {}
    for rec in fr.records():
        key = rec.pop("key")
        out[key] = {k: v for k, v in rec.items() if k != "as_of_s"}
    return out


def features_of(rec: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if rec is None else {k: v for k, v in rec.items() if k not in ("key", "as_of_s")}


# ---- module fixtures: one applied repo per online store, one feast serve ---------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("feast")


@pytest.fixture(scope="module")
def repos(workdir: Path) -> Iterator[dict[str, FeastRepo]]:
    project = workdir / "proj"
    write_default_spec(project)
    out = {"sqlite": FeastRepo.for_project(project)}
    redis_url = _redis_reachable()
    if redis_url is not None:
        name = f"fstest-{uuid.uuid4().hex[:10]}"
        out["redis"] = FeastRepo.for_project(workdir / "rproj", f"{redis_url}?prefix={name}")
        generate_repo(out["redis"])

    def cli_apply() -> Any:
        return runner.invoke(app, ["features", "apply", "-p", str(project), "--json"])

    def feast_apply() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [FEAST, "-c", str(out["redis"].path), "apply"], capture_output=True, text=True
        )

    with ThreadPoolExecutor(2) as pool:
        sqlite_job = pool.submit(cli_apply)
        redis_job = pool.submit(feast_apply) if "redis" in out else None
        result = sqlite_job.result()
        assert result.exit_code == 0, result.output
        doc = orjson.loads(result.stdout)
        assert doc["online_store"] == "sqlite"
        assert any("user_features" in line for line in doc["feast_output"])
        if redis_job is not None:
            proc = redis_job.result()
            assert proc.returncode == 0, proc.stderr
    yield out
    if "redis" in out:
        _drop_redis_project(out["redis"])


def _drop_redis_project(repo: FeastRepo) -> None:
    """Feast's own teardown, then proof that no key of the project is left."""
    import redis

    store = FeastFeatureStore(repo)
    store.teardown()
    r = redis.Redis.from_url(REDIS_URL)
    left = list(r.scan_iter(b"*" + repo.project.encode()))
    if left:
        r.delete(*left)
    r.close()
    assert left == [], f"teardown left {len(left)} keys of {repo.project}"


@pytest.fixture(scope="module")
def stores(repos: dict[str, FeastRepo]) -> Iterator[dict[str, FeastFeatureStore]]:
    out = {kind: FeastFeatureStore(repo) for kind, repo in repos.items()}
    yield out
    for s in out.values():
        s.close()


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, stores: dict[str, FeastFeatureStore]) -> Any:
    if request.param not in stores:
        pytest.skip(f"no Redis at {REDIS_URL}")
    return stores[request.param]


@pytest.fixture(scope="module")
def server(repos: dict[str, FeastRepo]) -> Iterator[str]:
    """``feedstack features serve`` (the real ``feast serve``) on the SQLite repo."""
    port = _free_port()
    project = repos["sqlite"].path.parent.parent
    cmd = [sys.executable, "-c", "from feedstack.cli.main import main; main()"]
    cmd += ["features", "serve", "-p", str(project), "--port", str(port)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{url}/health", timeout=2) as resp,
            ):
                if resp.status == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"feast serve did not come up: {err[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and its workers
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


# ---- writes and online reads ---------------------------------------------------------------


def test_our_protos_are_feasts_protos(stores: dict[str, FeastFeatureStore]) -> None:
    """write_online builds ValueProtos itself: byte for byte what Feast's converter builds."""
    from feast.utils import _convert_arrow_to_proto

    from feedstack.features.feast_codec import value_protos

    st = stores["sqlite"]
    for v in VIEWS:
        fr = rows_for(v.name, [f"k{i}" for i in range(6)], T_OLD, seed=3)
        fv = st.feature_view(v.name)
        join_keys = {e.name: e.dtype.to_value_type() for e in fv.entity_columns}
        theirs = _convert_arrow_to_proto(fr.to_arrow(), fv, join_keys)
        ours = list(zip(*value_protos(v, fr), strict=True))
        for (_, values, _, _), mine in zip(theirs, ours, strict=True):
            assert [values[n].SerializeToString() for n in v.feature_names] == [
                p.SerializeToString() for p in mine
            ]


def test_value_text_is_feasts(stores: dict[str, FeastFeatureStore]) -> None:
    """The SQLite rows' ``value_text`` is what Feast's extract_text_and_num gives (we skip its
    per-value dispatch), for every view and dtype; Arrow list columns (how the aggregator builds
    user features) give the same protos as Python lists."""
    import sqlite3

    from feast.infra.online_stores.helpers import extract_text_and_num
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    from feedstack.features.feast_codec import value_protos

    st = stores["sqlite"]
    for v in VIEWS:
        fr = rows_for(v.name, [f"vt{i}" for i in range(5)], T_OLD, seed=4)
        st.write_online([fr])
        as_arrow = FeatureRows(
            fr.view,
            fr.keys,
            fr.as_of_s,
            {
                name: pa.array(list(col)) if not isinstance(col, np.ndarray) else col
                for name, col in fr.columns.items()
            },
        )
        assert [[p.SerializeToString() for p in c] for c in value_protos(v, as_arrow)] == [
            [p.SerializeToString() for p in c] for c in value_protos(v, fr)
        ]
    db = sqlite3.connect(st.repo.sqlite_path)
    try:
        seen = 0
        for v in VIEWS:
            table = f"{st.repo.project}_{v.name}"
            for raw, text in db.execute(f'SELECT value, value_text FROM "{table}"'):
                val = ValueProto()
                val.ParseFromString(raw)
                assert text == extract_text_and_num(val, False)[0]
                seen += 1
        assert seen > 0
    finally:
        db.close()


def test_push_round_trip_every_view(store: FeastFeatureStore) -> None:
    """write_online -> Feast's get_online_features returns what we pushed, list types too;
    our direct read returns exactly what Feast returns."""
    for i, v in enumerate(VIEWS):
        keys = [f"rt-{v.name}-{j}" for j in range(5)]
        fr = rows_for(v.name, keys, T_OLD + 10.25, seed=i)
        store.write_online([fr])
        want = expected(fr)
        via_feast = store.get_online_feast(v.name, [*keys, "never-written"])
        direct = store.get_online(v.name, [*keys, "never-written"])
        assert [features_of(r) for r in via_feast] == [*(want[k] for k in keys), None]
        assert [features_of(r) for r in direct] == [features_of(r) for r in via_feast]
        for a, b in zip(direct[:-1], via_feast[:-1], strict=True):
            assert a is not None and b is not None
            assert int(a["as_of_s"]) == b["as_of_s"]  # Feast reports whole seconds
        # Redis keeps the time to the microsecond, Feast's SQLite store to the second.
        tol = 1e-5 if store.repo.online_kind == "redis" else 1.0
        assert direct[0] is not None and abs(direct[0]["as_of_s"] - (T_OLD + 10.25)) <= tol
        assert direct[0]["key"] == keys[0]


def test_single_key_read_matches_feast(store: FeastFeatureStore) -> None:
    fr = rows_for("user_features", ["one-user"], T_OLD, seed=11)
    store.write_online([fr])
    got = store.get_online("user_features", ["one-user"])
    assert [features_of(r) for r in got] == [expected(fr)["one-user"]]
    assert got == store.get_online("user_features", ["one-user"])
    assert store.get_online("user_features", []) == []


def test_newest_row_wins(store: FeastFeatureStore) -> None:
    new = rows_for("topic_stats", ["nw-a", "nw-b"], T_OLD + 100, seed=1)
    old = rows_for("topic_stats", ["nw-a", "nw-b"], T_OLD + 50, seed=2)
    store.write_online([new])
    store.write_online([old])  # a late, older row never replaces a newer one
    got = {r["key"]: features_of(r) for r in store.get_online("topic_stats", ["nw-a", "nw-b"]) if r}
    assert got == expected(new)
    # Within one batch as well: the newest row of each key is the one written.
    both = FeatureRows(
        "topic_stats",
        ["nw-c", "nw-c"],
        np.array([T_OLD + 300, T_OLD + 200]),
        {"impressions_1h": np.array([3.0, 2.0], np.float32), "clicks_1h": np.zeros(2, np.float32)},
    )
    store.write_online([both])
    (rec,) = store.get_online("topic_stats", ["nw-c"])
    assert rec is not None and rec["impressions_1h"] == 3.0
    # And across the rows of one call: a snapshot row, then a newer online row of the key.
    snap = rows_for("topic_stats", ["nw-d"], T_OLD + 400, seed=3)
    live = rows_for("topic_stats", ["nw-d"], T_OLD + 430, seed=4)
    store.write_online([live, snap])
    assert features_of(store.get_online("topic_stats", ["nw-d"])[0]) == expected(live)["nw-d"]


def test_same_answers_as_memory_sink(store: FeastFeatureStore) -> None:
    """The reference sink and Feast agree after batches that arrive out of order, several
    rows of a view per call (snapshots + online rows, as the worker writes them)."""
    keys = [f"ms-{i}" for i in range(6)]
    rng = np.random.default_rng(21)
    calls = []
    for c in range(4):
        parts = []
        for p in range(2):
            pick = sorted(rng.choice(len(keys), 3, replace=False).tolist())
            # whole seconds, distinct per call: Feast's SQLite store keeps seconds only
            as_of = float(int(T_OLD)) + 1000 + float(rng.integers(50)) * 10 + c
            parts.append(rows_for("article_stats", [keys[i] for i in pick], as_of, seed=10 * c + p))
        calls.append(parts)
    memory = MemorySink()
    for parts in calls:
        memory.write_online(parts)
        store.write_online(parts)
    got = store.get_online("article_stats", keys)
    for key, rec in zip(keys, got, strict=True):
        ref = memory.online["article_stats"].get(key)
        if ref is None:
            assert rec is None
            continue
        assert rec is not None
        assert features_of(rec) == features_of(ref)
        assert rec["as_of_s"] == pytest.approx(ref["as_of_s"], abs=1e-5)


def test_open_feature_sink_reuses_the_applied_repo(repos: dict[str, FeastRepo]) -> None:
    project = repos["sqlite"].path.parent.parent
    registry = repos["sqlite"].registry_path.stat().st_mtime_ns
    sink = open_feature_sink(project)  # applied and current: no second `feast apply`
    try:
        assert sink.repo == repos["sqlite"]
        assert repos["sqlite"].registry_path.stat().st_mtime_ns == registry
    finally:
        sink.close()


# ---- offline files, materialize, serve ------------------------------------------------------


def test_offline_files_are_new_atomic_and_idempotent(stores: dict[str, FeastFeatureStore]) -> None:
    st = stores["sqlite"]
    folder = st.repo.source_dir("region_trending")
    before = set(folder.iterdir())
    fr = rows_for("region_trending", ["of-eu", "of-us"], T_OLD, seed=5)
    st.write_offline([fr])
    st.write_offline([fr])  # the same batch again: nothing new
    added = set(folder.iterdir()) - before
    assert len(added) == 1
    (path,) = added
    stat = path.stat()
    st.write_offline([rows_for("region_trending", ["of-eu"], T_OLD + 60, seed=6)])
    assert path.stat().st_mtime_ns == stat.st_mtime_ns  # a written file is never rewritten
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp files left
    assert pq.read_table(path).num_rows == 2


def test_materialize_cli_then_feast_serve_http(
    stores: dict[str, FeastFeatureStore], server: str
) -> None:
    """Offline rows -> `feast materialize-incremental` (real CLI) -> online; `feast serve`
    answers /get-online-features with values we pushed and values it materialized."""
    st = stores["sqlite"]
    offline = rows_for("article_stats", ["mat-1", "mat-2"], T_OLD + 5, seed=8)
    st.write_offline([offline])
    pushed = rows_for("user_features", ["srv-1"], T_OLD + 7, seed=9)
    st.write_online([pushed])
    end = datetime.now(UTC).isoformat()
    proc = subprocess.run(
        [FEAST, "-c", str(st.repo.path), "materialize-incremental", end],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    got = {
        r["key"]: features_of(r) for r in st.get_online("article_stats", ["mat-1", "mat-2"]) if r
    }
    assert got == expected(offline)

    def ask(view: str, key: str) -> dict[str, Any]:
        v = VIEWS_BY_NAME[view]
        body = {"features": [f"{view}:{f}" for f in v.feature_names], "entities": {v.entity: [key]}}
        req = urllib.request.Request(
            f"{server}/get-online-features",
            data=orjson.dumps(body),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            doc = orjson.loads(resp.read())
        names = doc["metadata"]["feature_names"]
        return {n: r["values"][0] for n, r in zip(names, doc["results"], strict=True)}

    answer = ask("user_features", "srv-1")
    want = expected(pushed)["srv-1"]
    assert answer["user_id"] == "srv-1"
    assert {k: answer[k] for k in want} == want
    answer = ask("article_stats", "mat-2")
    assert {k: answer[k] for k in expected(offline)["mat-2"]} == expected(offline)["mat-2"]


def test_cli_status_and_help(repos: dict[str, FeastRepo]) -> None:
    project = repos["sqlite"].path.parent.parent
    result = runner.invoke(app, ["features", "status", "-p", str(project), "--json"])
    assert result.exit_code == 0, result.output
    doc = orjson.loads(result.stdout)
    assert (doc["generated"], doc["stale"], doc["applied"]) == (True, False, True)
    for cmd in ("apply", "materialize", "serve", "status"):
        assert runner.invoke(app, ["features", cmd, "--help"]).exit_code == 0
    bad = runner.invoke(app, ["features", "materialize", "-p", str(project), "--end", "soon"])
    assert bad.exit_code == 2


# ---- point-in-time --------------------------------------------------------------------------


def test_historical_never_returns_a_row_from_the_future(
    stores: dict[str, FeastFeatureStore],
) -> None:
    st = stores["sqlite"]
    t1, t2, t3 = T_OLD, T_OLD + 600, T_OLD + 1200
    rows = [rows_for("user_features", ["pit-u"], t, seed=s) for t, s in ((t1, 1), (t2, 2), (t3, 3))]
    for fr in rows:
        st.write_offline([fr])  # t3 is the planted later row
    topic = rows_for("topic_stats", ["pit-t"], t1, seed=4)
    st.write_offline([topic])

    def at(*pairs: tuple[str, float]) -> pa.Table:
        return pa.table(
            {
                "user_id": [u for u, _ in pairs],
                "topic": ["pit-t"] * len(pairs),
                "event_timestamp": pa.array(
                    [round(t * 1e6) for _, t in pairs], pa.timestamp("us", tz="UTC")
                ),
            }
        )

    entity_rows = at(
        ("pit-u", t2 + 599),  # between t2 and t3: the t2 row, not the later t3 one
        ("pit-u", t1 - 1),  # before any row: nothing
        ("pit-u", t3),  # exactly at t3: t3 is visible
        ("nobody", t3),  # no data at all
        ("pit-u", t3 + 31 * 86_400),  # past the view's 30-day ttl: nothing
    )
    out = st.historical(entity_rows, ["user_features", "topic_stats"])
    assert out.column("user_id").to_pylist() == entity_rows.column("user_id").to_pylist()
    impressions = out.column("user_features__impressions_24h").to_pylist()
    want = [expected(fr)["pit-u"]["impressions_24h"] for fr in rows]
    assert impressions == [want[1], None, want[2], None, None]
    assert (
        out.column("user_features__recent_clicks").to_pylist()[0]
        == (expected(rows[1])["pit-u"]["recent_clicks"])
    )
    topic_imp = expected(topic)["pit-t"]["impressions_1h"]
    assert out.column("topic_stats__impressions_1h").to_pylist()[:4] == [
        topic_imp,
        None,
        topic_imp,
        topic_imp,
    ]


# ---- errors ---------------------------------------------------------------------------------


def test_unreachable_redis_is_backend_unavailable(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there
    store = FeastFeatureStore(FeastRepo(tmp_path / "r", online_url=f"redis://127.0.0.1:{port}/0"))
    with pytest.raises(BackendUnavailable, match="online read of user_features"):
        store.get_online("user_features", ["u1"])


def test_unapplied_repo_says_what_to_run(tmp_path: Path) -> None:
    store = FeastFeatureStore(FeastRepo(tmp_path / "never"))
    with pytest.raises(ConfigError, match="feedstack features apply"):
        store.write_online([rows_for("topic_stats", ["t"], T_OLD)])
    with pytest.raises(InputError, match="unknown feature view"):
        store.get_online("no_such_view", ["x"])
