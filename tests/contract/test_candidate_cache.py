"""The candidate-cache contract, run against every backend (memory, SQLite, Redis)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from feedstack.core.errors import BackendUnavailable, ConfigError, DataError
from feedstack.storage.candidate_cache import (
    CandidateCache,
    CandidateList,
    decode,
    encode,
    open_candidate_cache,
)
from tests.conftest import REDIS_URL

BACKENDS = ["memory", "sqlite", "redis"]


def lists(n: int, version: str = "news-1", seed: int = 0) -> CandidateList:
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((n, 3)).astype(np.float32)
    if n:
        features[0, 1] = np.nan  # LightGBM's "missing" survives the round trip
        features[-1, 2] = -np.inf
    return CandidateList(
        version,
        1_767_225_600.25,
        [f"art-{seed}-{j}-é" for j in range(n)],  # non-ASCII ids too
        rng.random(n).astype(np.float32),
        (np.arange(n) % 3).astype(np.uint8),
        ("covisit", "content", "trending"),
        features,
        ("covisit", "content_rank", "history_length"),
    )


@pytest.fixture(params=BACKENDS)
def cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CandidateCache]:
    if request.param == "memory":
        c: CandidateCache = open_candidate_cache("memory://", tmp_path)
    elif request.param == "sqlite":
        c = open_candidate_cache("sqlite://data/candidates.sqlite", tmp_path)
    else:
        prefix = request.getfixturevalue("redis_prefix")
        c = open_candidate_cache(f"{REDIS_URL}?prefix={prefix}", tmp_path)
    yield c
    c.close()


def test_round_trip_is_exact(cache: CandidateCache) -> None:
    original = lists(500)
    written = cache.put_many({"u1": original})
    got = cache.get("u1")
    assert got is not None and got.same_as(original)
    assert got.version == "news-1" and len(got) == 500
    assert written == len(encode(original))


def test_missing_user_is_none(cache: CandidateCache) -> None:
    cache.put_many({"u1": lists(3)})
    assert cache.get("nobody") is None


def test_put_replaces_the_whole_list_and_version(cache: CandidateCache) -> None:
    cache.put_many({"u1": lists(10, "news-1", seed=1), "u2": lists(4, "news-1", seed=2)})
    newer = lists(7, "news-2", seed=3)
    cache.put_many({"u1": newer})
    got = cache.get("u1")
    assert got is not None and got.same_as(newer) and got.version == "news-2"
    other = cache.get("u2")
    assert other is not None and other.same_as(lists(4, "news-1", seed=2))
    assert cache.count() == 2


def test_empty_list_round_trips(cache: CandidateCache) -> None:
    cache.put_many({"u1": lists(0)})
    got = cache.get("u1")
    assert got is not None and len(got) == 0 and got.features.shape == (0, 3)


def test_closed_cache_is_unavailable_not_an_answer(cache: CandidateCache) -> None:
    cache.put_many({"u1": lists(2)})
    cache.close()
    if cache.url.startswith("redis"):
        pytest.skip("redis-py reconnects after close(); the unreachable server is tested below")
    with pytest.raises(BackendUnavailable):
        cache.get("u1")


def test_unreachable_redis_is_unavailable(tmp_path: Path) -> None:
    cache = open_candidate_cache("redis://127.0.0.1:1/0", tmp_path, timeout_s=0.05)
    with pytest.raises(BackendUnavailable):
        cache.get("u1")


def test_encoding_is_compact_and_checked() -> None:
    c = lists(500)
    raw = encode(c)
    # 4 (score) + 1 (source) + 12 (3 features) bytes per candidate + the ids + a small header.
    ids = sum(len(i.encode()) + 1 for i in c.items)
    assert len(raw) <= 500 * 17 + ids + 200
    with pytest.raises(DataError, match="unknown format"):
        decode(b"XXXX" + raw[4:])
    with pytest.raises(DataError, match="NUL"):
        encode(CandidateList("v", 0.0, ["a\x00b"], *_one()))


def test_corrupt_entries_are_data_errors_only() -> None:
    """Regression: a corrupt entry once raised InputError (answered 400, the caller blamed).
    Every cut, every flipped header byte and plain garbage is a DataError, nothing else."""
    raw = encode(lists(20))
    rng = np.random.default_rng(0)
    bad = [raw[:n] for n in range(0, len(raw), 7)] + [b"garb", b"", b"FSC1" + b"\xff" * 8]
    for _ in range(200):
        b = bytearray(raw[:80])
        b[int(rng.integers(len(b)))] = int(rng.integers(256))
        bad.append(bytes(b) + raw[80:])
    for blob in bad:
        try:
            got = decode(blob)
        except DataError:
            continue
        assert isinstance(got, CandidateList)  # a flipped float byte may still decode


def _one() -> tuple[np.ndarray, np.ndarray, tuple[str, ...], np.ndarray, tuple[str, ...]]:
    return (
        np.zeros(1, np.float32),
        np.zeros(1, np.uint8),
        ("s",),
        np.zeros((1, 0), np.float32),
        (),
    )


def test_unknown_scheme_names_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="memory, sqlite, redis"):
        open_candidate_cache("s3://bucket", tmp_path)
