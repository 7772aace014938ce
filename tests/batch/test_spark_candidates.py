"""The candidate build on Spark writes the local build's lists, byte for byte: into Redis from
the tasks of each region shard (the Redis backend's key layout), or through the driver."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedstack.batch.candidates import spark_candidate_build
from feedstack.batch.engine import Engine
from feedstack.storage.candidate_cache import (
    MemoryCandidateCache,
    RedisCandidateCache,
    encode,
    open_candidate_cache,
)
from feedstack.train.candidate_cache import build_candidate_cache
from feedstack.train.project import train_project
from feedstack.train.slates import RankerSize
from feedstack.world import WorldConfig
from tests.conftest import REDIS_URL
from tests.factories import world_project

pytestmark = pytest.mark.slow  # one Spark session for the run; each job a few seconds


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MemoryCandidateCache]:
    root = tmp_path_factory.mktemp("spark-candidates")
    project = world_project(root, WorldConfig(users=300, articles=150, days=1.0, seed=11))
    train_project(project, warmup_hours=6, eval_hours=6, sizes=(RankerSize(10, 3),), repeats=5)
    local = MemoryCandidateCache()
    report = build_candidate_cache(project, cache=local)
    assert report["users"] > 0
    return project, local


@pytest.mark.redis
def test_redis_writes_by_region_shard_equal_local(
    trained: tuple[Path, MemoryCandidateCache], spark_engine: Engine, redis_prefix: str
) -> None:
    project, local = trained
    cache = open_candidate_cache(f"{REDIS_URL}?prefix={redis_prefix}", project, timeout_s=5)
    assert isinstance(cache, RedisCandidateCache)
    result = spark_candidate_build(spark_engine, project, cache=cache)
    assert result["written_by"] == "tasks, per region shard"
    assert result["users"] == local.count() == cache.count()
    # Every shard's users were written by that shard's tasks only (one region per task).
    assert sum(s["users"] for s in result["shards"].values()) == result["users"]
    for user in local._data:
        got = cache.get(user)
        want = local.get(user)
        assert got is not None and want is not None
        assert encode(got) == encode(want), user
    cache.close()


def test_driver_writes_equal_local(
    trained: tuple[Path, MemoryCandidateCache], spark_engine: Engine
) -> None:
    project, local = trained
    target = MemoryCandidateCache()
    result = spark_candidate_build(spark_engine, project, cache=target)
    assert result["written_by"] == "driver" and result["engine"] == "local[2]"
    assert target._data == local._data  # the encoded bytes of every user
