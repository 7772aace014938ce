"""One contract suite for the online feature store port (features/online_store.py), run against
every backend opened by URL: memory://, Feast on SQLite and Feast on Redis.

One applied Feast repo per backend for the module (``feast apply`` takes seconds; both apply in
parallel). Redis is the server at REDIS_URL under a unique Feast project; without a server the
Redis case skips, and fails under CI=true.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from feedstack.core.errors import BackendUnavailable, ConfigError, InputError
from feedstack.core.spec import write_default_spec
from feedstack.features.definitions import VIEWS
from feedstack.features.feast_cli import apply_repos
from feedstack.features.feast_repo import FeastRepo
from feedstack.features.feast_store import FeastFeatureStore
from feedstack.features.online_store import OnlineFeatures, drop_memory, open_online_features
from feedstack.features.rows import FeatureRows
from tests.conftest import REDIS_URL
from tests.e2e.test_feast_store import _redis_reachable, expected, features_of, rows_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings(r"ignore:fetch_arrow_table\(\) is deprecated:DeprecationWarning"),
]
T = 1_767_225_600.0  # whole seconds: Feast's SQLite store keeps seconds only


@pytest.fixture(scope="module")
def urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[str, Path]]]:
    root = tmp_path_factory.mktemp("online")
    project = root / "proj"
    write_default_spec(project)
    out = {"memory": (f"memory://{uuid.uuid4().hex}", project)}
    out["sqlite"] = ("sqlite://data/feast/online.db", project)
    repos = [FeastRepo.for_project(project, out["sqlite"][0])]
    if _redis_reachable() is not None:
        rproject = root / "rproj"
        write_default_spec(rproject)
        out["redis"] = (f"{REDIS_URL}?prefix=fsonline-{uuid.uuid4().hex[:10]}", rproject)
        repos.append(FeastRepo.for_project(rproject, out["redis"][0]))
    apply_repos(repos)  # raises if an apply fails
    yield out
    drop_memory(out["memory"][0].split("://", 1)[1])
    if "redis" in out:
        FeastFeatureStore(repos[1]).teardown()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(
    request: pytest.FixtureRequest, urls: dict[str, tuple[str, Path]]
) -> Iterator[OnlineFeatures]:
    if request.param not in urls:
        pytest.skip(f"no Redis at {REDIS_URL}")
    url, project = urls[request.param]
    s = open_online_features(url, project)
    yield s
    s.close()


def test_every_view_round_trips(store: OnlineFeatures) -> None:
    for i, v in enumerate(VIEWS):
        keys = [f"rt-{v.name}-{j}" for j in range(4)]
        fr = rows_for(v.name, keys, T + 10, seed=i)
        store.write_online([fr])
        got = store.get_online(v.name, [*keys, "never-written"])
        want = expected(fr)
        assert [features_of(r) for r in got] == [*(want[k] for k in keys), None]
        assert got[0] is not None and got[0]["key"] == keys[0]
        assert got[0]["as_of_s"] == pytest.approx(T + 10, abs=1.0)
    assert store.get_online("user_features", []) == []


def test_a_newer_row_is_never_replaced_by_an_older_one(store: OnlineFeatures) -> None:
    new = rows_for("topic_stats", ["nw-a", "nw-b"], T + 100, seed=1)
    old = rows_for("topic_stats", ["nw-a", "nw-b"], T + 50, seed=2)
    store.write_online([new])
    store.write_online([old])
    got = {r["key"]: features_of(r) for r in store.get_online("topic_stats", ["nw-a", "nw-b"]) if r}
    assert got == expected(new)
    both = FeatureRows(
        "topic_stats",
        ["nw-c", "nw-c"],
        np.array([T + 300, T + 200]),
        {"impressions_1h": np.array([3.0, 2.0], np.float32), "clicks_1h": np.zeros(2, np.float32)},
    )
    store.write_online([both])
    (rec,) = store.get_online("topic_stats", ["nw-c"])
    assert rec is not None and rec["impressions_1h"] == 3.0


def test_rewriting_the_same_rows_changes_nothing(store: OnlineFeatures) -> None:
    fr = rows_for("user_features", ["idem-1", "idem-2"], T + 500, seed=7)
    store.write_online([fr])
    first = store.get_online("user_features", ["idem-1", "idem-2"])
    store.write_online([fr])
    assert store.get_online("user_features", ["idem-1", "idem-2"]) == first


def test_an_unknown_view_is_named(store: OnlineFeatures) -> None:
    with pytest.raises(InputError, match="unknown feature view 'no_such_view'"):
        store.get_online("no_such_view", ["x"])


def test_closing_twice_is_harmless(urls: dict[str, tuple[str, Path]]) -> None:
    for url, project in urls.values():
        s = open_online_features(url, project)
        s.get_online("user_features", ["u"])
        s.close()
        s.close()


def test_a_closed_memory_store_refuses_reads(urls: dict[str, tuple[str, Path]]) -> None:
    s = open_online_features(*urls["memory"])
    s.close()
    with pytest.raises(BackendUnavailable, match="closed"):
        s.get_online("user_features", ["u"])


def test_memory_stores_of_one_name_share_their_rows(urls: dict[str, tuple[str, Path]]) -> None:
    a, b = open_online_features(*urls["memory"]), open_online_features(*urls["memory"])
    a.write_online([rows_for("user_features", ["shared"], T, seed=3)])
    assert b.get_online("user_features", ["shared"])[0] is not None


def test_an_unreachable_backend_is_backend_unavailable(tmp_path: Path) -> None:
    write_default_spec(tmp_path)
    s = open_online_features("redis://127.0.0.1:1/0?prefix=unreachable", tmp_path)
    with pytest.raises(BackendUnavailable):
        s.get_online("user_features", ["u1"])


def test_an_unknown_scheme_lists_the_valid_ones(tmp_path: Path) -> None:
    match = r"backends.online_features = 'mongodb://x'.*valid: sqlite, redis, rediss, memory"
    with pytest.raises(ConfigError, match=match):
        open_online_features("mongodb://x", tmp_path)
