"""A property-based fuzzer against the HTTP API in process, on the real request path.

The app serves a real ``FeedPipeline`` whose candidate cache is a Redis URL carrying a planted
password on a port nothing listens on (every feed degrades to the fallback lists), with the
real ingest pipeline (SQLite log, file dead-letter store) behind ``POST /v1/events``. Hypothesis
draws hostile requests: user ids of any Unicode (NUL, control characters, overlong), any ``k``
and region, missing/wrong/right keys, event bodies as JSON arrays, ``{"events": [...]}``, NDJSON
or raw bytes, with events of every type whose fields are valid, mistyped, hostile strings or
nested deep. The oracle, for every request: no 5xx, a JSON error body naming a code for every
4xx, no traceback, and the planted password nowhere (responses and the server log).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from feedstack.core.clock import FixedClock
from feedstack.core.spec import parse_spec
from feedstack.features.item_cache import ItemFeatureCache
from feedstack.features.online_store import MemoryOnlineFeatures
from feedstack.ingest.pipeline import Ingestor
from feedstack.ingest.validate import Validator
from feedstack.monitor.metrics import ServingMetrics
from feedstack.serve.http import create_app
from feedstack.serve.pipeline import FeedPipeline
from feedstack.serve.security import Guard
from feedstack.storage.candidate_cache import RedisCandidateCache
from feedstack.storage.deadletter import FileDeadLetter
from feedstack.storage.sqlite_log import SqliteEventLog
from tests.conftest import NOW

PLANTED = "pl4nted-fuzz-S3cret"
KEY = "fuzz-key"
ADMIN = "fuzz-admin"
FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # the same requests every run: a failure reproduces
    database=None,  # nothing written into the work tree
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    spec = parse_spec({"api": {"max_events_per_request": 50}})
    clock = FixedClock(NOW)
    log = SqliteEventLog(root / "events.sqlite")
    ingestor = Ingestor(log, FileDeadLetter(root / "dl"), Validator(spec.ingest, clock))
    cache = RedisCandidateCache(f"redis://:{PLANTED}@127.0.0.1:1/0?prefix=fz", timeout_s=0.05)
    svc = FeedPipeline(
        spec,
        None,
        cache,
        MemoryOnlineFeatures(),
        ItemFeatureCache.open(SqliteEventLog(root / "events.sqlite")),
        ingestor=ingestor,
        clock=clock,
        background=False,
    )
    guard = Guard.from_spec(
        spec.api, {spec.api.keys_env: f"{KEY},{ADMIN}:feeds+events+admin"}, ingest=spec.ingest
    )
    app = create_app(svc, guard, ServingMetrics(), feed_threads=0)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
    svc.close()


def check(r: Any, caplog: pytest.LogCaptureFixture) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:300])
    assert "Traceback" not in r.text and PLANTED not in r.text
    assert PLANTED not in caplog.text
    if r.status_code >= 400:
        err = r.json()["error"]
        assert err["code"] and err["message"]


hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(max_codepoint=0x9F), max_size=20),
    st.sampled_from(["", "\x00", "a\x00b", "\n", "x" * 200, "\u2028", "é日本", "../../etc"]),
)
ids = st.one_of(st.sampled_from(["u1", "a1", "e1", "r1"]), hostile_text)
times = st.one_of(
    st.just(NOW.isoformat()),
    st.sampled_from(["2026-06-01T00:00:00", "yesterday", "9999-12-31T23:59:59Z", "", "0"]),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
)
anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | hostile_text,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def dumps(obj: Any) -> bytes:
    """The standard library's encoder: it writes the deep values orjson refuses to."""
    return json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")


def deep(n: int) -> Any:
    out: Any = []
    for _ in range(n):
        out = [out]
    return out


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["click", "impression", "article_published", "dwell", "hide",
                                 "user_profile", "nope"]))  # fmt: skip
    ev: dict[str, Any] = {"type": kind, "event_id": draw(ids), "event_time": draw(times)}
    fields = {
        "user_id": ids, "article_id": ids, "request_id": ids, "region": ids, "topic": ids,
        "title": hostile_text, "text": hostile_text, "publish_time": times, "signup_time": times,
        "item_ids": st.lists(ids, max_size=4), "model_version": ids,
        "dwell_ms": st.integers(-(2**70), 2**70), "position": st.integers(-5, 2**64),
    }  # fmt: skip
    for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=8, unique=True)):
        ev[name] = draw(st.one_of(fields[name], anything))
    if draw(st.booleans()):
        ev["extra"] = draw(st.one_of(anything, st.integers(1, 400).map(deep)))
    return ev


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, str]:
    evs = draw(st.lists(events(), max_size=5))
    form = draw(st.sampled_from(["array", "wrapped", "ndjson", "raw", "deep"]))
    if form == "array":
        return dumps(evs), "application/json"
    if form == "wrapped":
        return dumps({"events": evs}), "application/json"
    if form == "ndjson":
        return b"\n".join(dumps(e) for e in evs), "application/x-ndjson"
    if form == "deep":
        n = draw(st.integers(10, 3000))
        return b"[" * n + b"]" * n, "application/json"
    return draw(st.binary(max_size=200)), draw(st.sampled_from(["application/json", "text/plain"]))


keys = st.sampled_from([None, KEY, ADMIN, "wrong-key", ""])


@FUZZ
@given(user=hostile_text, k=st.one_of(st.none(), st.integers(-(2**40), 2**40)), region=st.one_of(
    st.none(), hostile_text), key=keys)  # fmt: skip
def test_fuzz_feed(
    client: TestClient,
    caplog: pytest.LogCaptureFixture,
    user: str,
    k: int | None,
    region: str | None,
    key: str | None,
) -> None:
    params: dict[str, Any] = {}
    if k is not None:
        params["k"] = k
    if region is not None:
        params["region"] = region
    headers = {"x-api-key": key} if key else {}
    path = "/v1/feed/" + quote(user, safe="")
    with caplog.at_level(logging.WARNING):
        r = client.get(path, params=params, headers=headers)
    check(r, caplog)
    if r.status_code == 200:
        body = r.json()
        assert body["fallback"] in ("degraded", "no_model") and len(body["items"]) <= 100


@FUZZ
@given(body=bodies(), key=keys)
def test_fuzz_events(
    client: TestClient, caplog: pytest.LogCaptureFixture, body: tuple[bytes, str], key: str | None
) -> None:
    raw, ctype = body
    headers = {"content-type": ctype, **({"x-api-key": key} if key else {})}
    with caplog.at_level(logging.WARNING):
        r = client.post("/v1/events", content=raw, headers=headers)
    check(r, caplog)
    assert r.status_code in (202, 400, 401, 403, 413), r.status_code


def test_openapi_describes_event_bodies(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    body = doc["paths"]["/v1/events"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/x-ndjson"} <= set(body)
    assert {"Click", "Impression", "ArticlePublished"} <= set(doc["components"]["schemas"])
    click = doc["components"]["schemas"]["Click"]["properties"]
    assert click["user_id"]["maxLength"] == 128 and "pattern" in click["user_id"]
    assert doc["components"]["securitySchemes"]["ApiKey"]["name"] == "X-API-Key"
