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
from feedstack.storage.candidate_codec import Catalog, round_trip_columns
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


def _close_to(got: CandidateList, original: CandidateList) -> None:
    """What FSC2 keeps: ids, sources, names, version exactly; every float within half a
    quantization step of its column's range; NaN and infinities as they were."""
    assert got.version == original.version and got.built_at_s == original.built_at_s
    assert got.items == original.items and got.source_names == original.source_names
    assert got.feature_names == original.feature_names
    assert got.sources.tobytes() == original.sources.tobytes()
    for a, b in [(got.scores, original.scores)] + [
        (got.features[:, j], original.features[:, j]) for j in range(original.features.shape[1])
    ]:
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_array_equal(np.isinf(a) & (a > 0), np.isinf(b) & (b > 0))
        fin = np.isfinite(b)
        span = float(b[fin].max() - b[fin].min()) if fin.any() else 0.0
        assert np.all(np.abs(a[fin] - b[fin]) <= span / 250 / 2 * 1.001 + 1e-7)


def test_round_trip_keeps_ids_exactly_and_values_within_a_step(cache: CandidateCache) -> None:
    original = lists(500)
    written = cache.put_many({"u1": original})
    got = cache.get("u1")
    assert got is not None and len(got) == 500
    _close_to(got, original)
    # A decoded list is a fixed point: put again, read again, the same bits.
    cache.put_many({"u2": got})
    again = cache.get("u2")
    assert again is not None and again.same_as(got)
    assert written == len(encode(got))


def test_exact_columns_stay_exact(cache: CandidateCache) -> None:
    """Small integers (ranks), constants (a user's history length) and a column that is
    another times a constant (a score relative to the user's best) decode bit for bit."""
    rng = np.random.default_rng(5)
    n = 300
    score = rng.random(n).astype(np.float32)
    feats = np.stack(
        [
            score,
            rng.integers(0, 500, n).astype(np.float32),  # a rank: uint16, exact
            np.full(n, 17.0, np.float32),  # history_length: one value
            (score / np.float32(score.max())).astype(np.float32),  # _rel: a multiple
        ],
        axis=1,
    )
    c = CandidateList(
        "news-1", 5.0, [f"a{j}" for j in range(n)], score, np.zeros(n, np.uint8), ("s",),
        feats, ("s", "s_rank", "history_length", "s_rel"),
    )  # fmt: skip
    cache.put_many({"u": c})
    got = cache.get("u")
    assert got is not None
    np.testing.assert_array_equal(got.features[:, 1:3], feats[:, 1:3])
    _close_to(got, c)
    # id (2) + source (1) + score (1) + rank (2): the other two columns cost nothing
    assert len(encode(c)) < n * 6 + 400


def test_lists_share_one_catalog_and_the_old_format_still_reads(
    cache: CandidateCache,
) -> None:
    """A golden entry the first format (FSC1, float32) wrote reads back exactly; re-put, it is
    written as FSC2."""
    fixtures = Path(__file__).parent.parent / "fixtures" / "candidate_cache"
    raw = (fixtures / "fsc1-golden.bin").read_bytes()
    assert raw[:4] == b"FSC1"
    old = decode(raw)
    want = np.load(fixtures / "fsc1-golden-expected.npz")
    assert old.version == "news-golden" and old.items[:2] == ["art-0-é", "art-1-é"]
    assert old.features.tobytes() == want["features"].tobytes()
    assert old.scores.tobytes() == want["scores"].tobytes()
    cache.put_many({"old": old, "new": lists(40, seed=4)})
    got = cache.get("old")
    assert got is not None and got.raw is not None and got.raw[:4] == b"FSC2"
    _close_to(got, old)


def test_missing_user_is_none(cache: CandidateCache) -> None:
    cache.put_many({"u1": lists(3)})
    assert cache.get("nobody") is None


def test_put_replaces_the_whole_list_and_version(cache: CandidateCache) -> None:
    cache.put_many({"u1": lists(10, "news-1", seed=1), "u2": lists(4, "news-1", seed=2)})
    newer = lists(7, "news-2", seed=3)
    cache.put_many({"u1": newer})
    got = cache.get("u1")
    assert got is not None and got.version == "news-2"
    _close_to(got, newer)
    other = cache.get("u2")
    assert other is not None
    _close_to(other, lists(4, "news-1", seed=2))
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
    # 2 (id) + 1 (source) + 1 (score) + 3 x 1 (features) bytes per candidate + a small header.
    assert len(raw) <= 500 * 7 + 600
    with pytest.raises(DataError, match="needs its catalog"):
        decode(raw)  # an FSC2 entry is never read without its catalog
    with pytest.raises(DataError, match="unknown format"):
        decode(b"XXXX" + raw[4:])
    with pytest.raises(DataError, match="NUL"):
        encode(CandidateList("v", 0.0, ["a\x00b"], *_one()))


def test_corrupt_entries_are_data_errors_only() -> None:
    """Regression: a corrupt entry once raised InputError (answered 400, the caller blamed).
    Every cut, every flipped header byte and plain garbage is a DataError, nothing else."""
    c = lists(20)
    catalog = Catalog.of(c.items)
    other = Catalog.of(c.items[::-1])

    def resolve(cid: str) -> Catalog:
        if cid != catalog.id:
            raise DataError(f"no catalog {cid}")
        return catalog

    fixtures = Path(__file__).parent.parent / "fixtures" / "candidate_cache"
    v1 = (fixtures / "fsc1-golden.bin").read_bytes()
    rng = np.random.default_rng(0)
    bad = [b"garb", b"", b"FSC1" + b"\xff" * 8, b"FSC2" + b"\xff" * 8, encode(c, other)]
    for raw in (encode(c, catalog), v1):
        bad += [raw[:n] for n in range(0, len(raw), 7)]
        for _ in range(200):
            b = bytearray(raw)
            b[int(rng.integers(len(b)))] = int(rng.integers(256))
            bad.append(bytes(b))
    for blob in bad:
        try:
            got = decode(blob, resolve)
        except DataError:
            continue
        assert isinstance(got, CandidateList)  # a flipped value byte may still decode


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


def test_training_measures_the_values_serving_reads() -> None:
    """round_trip_columns (what training scores the ranker on) equals a real entry's decode."""
    c = lists(300, seed=9)
    got = decode(encode(c, Catalog.of(c.items)), lambda cid: Catalog.of(c.items))
    back = round_trip_columns([c.scores] + [c.features[:, j] for j in range(3)])
    assert back[0].tobytes() == got.scores.tobytes()
    assert np.stack(back[1:], axis=1).tobytes() == got.features.tobytes()
