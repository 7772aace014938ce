"""The HTTP API over the synthetic service: feed, events, auth, caps, rate limit, health,
metrics, docs, and no internals in an error."""

from __future__ import annotations

import logging
import warnings

import orjson
import pytest

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its TestClient and warns when it falls back to httpx
    # (installed); the client works the same. Scoped to this import only.
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from feedstack.core.spec import Api
from feedstack.monitor.metrics import ServingMetrics
from feedstack.serve.http import create_app
from feedstack.serve.security import Guard
from feedstack.serve.synthetic import SyntheticFeedService
from tests.factories import T0, article, click

KEY = "test-key-1"  # no scopes named: feeds and events
FEEDS_KEY = "web-key"  # feeds only
ADMIN_KEY = "ops-key"  # feeds, events, admin
KEYS = f"{KEY}, other-key, {FEEDS_KEY}:feeds, {ADMIN_KEY}:feeds+events+admin"


class StepClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make_client(
    api: Api | None = None,
    metrics: bool = True,
    clock: StepClock | None = None,
    key: str | None = KEY,
) -> tuple[TestClient, SyntheticFeedService, ServingMetrics]:
    """A client sending ``key`` with every request (None: no key)."""
    api = api or Api()
    guard = Guard.from_spec(api, {api.keys_env: KEYS}, clock or StepClock())
    service = SyntheticFeedService(failing_users=frozenset({"boom"}))
    m = ServingMetrics(enabled=metrics)
    app = create_app(service, guard, m)
    headers = {"x-api-key": key} if key else None
    return TestClient(app, raise_server_exceptions=False, headers=headers), service, m


@pytest.fixture
def client() -> TestClient:
    return make_client()[0]


def test_feed_returns_ranked_items_with_source_and_model_version(client: TestClient) -> None:
    r = client.get("/v1/feed/u1", params={"k": 10}, headers={"x-request-id": "r-1"})
    assert r.status_code == 200
    body = r.json()
    assert body["user_id"] == "u1" and body["request_id"] == "r-1"
    assert body["model_version"] == "synthetic-1" and body["fallback"] is None
    assert [i["position"] for i in body["items"]] == list(range(10))
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert all(i["source"] and i["item_id"].startswith("a") for i in body["items"])
    # The same user gets the same feed (the synthetic service is deterministic).
    again = client.get("/v1/feed/u1", params={"k": 10}).json()
    assert again["items"] == body["items"]


def test_feed_default_k_and_cap(client: TestClient) -> None:
    assert len(client.get("/v1/feed/u1").json()["items"]) == Api().k_default
    for bad in (0, -1, Api().k_max + 1):
        r = client.get("/v1/feed/u1", params={"k": bad})
        if bad == 0:  # 0 means "the default", like gRPC's unset field
            assert r.status_code == 200
            continue
        assert r.status_code == 422, bad
        assert r.json()["error"]["field"] == "k"
    r = client.get("/v1/feed/u1", params={"k": "ten"})
    assert r.status_code == 422
    assert r.json()["error"] == {
        "code": "invalid_request",
        "message": r.json()["error"]["message"],
        "field": "k",
    }


def test_internal_error_leaks_nothing(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="feedstack.serve"):
        r = client.get("/v1/feed/boom")
    assert r.status_code == 500
    assert r.json() == {"error": {"code": "internal", "message": "internal error"}}
    assert "secret" not in r.text and "Traceback" not in r.text
    assert "RuntimeError" in caplog.text  # the server log keeps what the client is not shown


def test_events_need_a_valid_key() -> None:
    client = make_client(key=None)[0]
    body = orjson.dumps([click(1)])
    r = client.post("/v1/events", content=body)
    assert r.status_code == 401 and r.json()["error"]["field"] == "api_key"
    r = client.post("/v1/events", content=body, headers={"x-api-key": "nope"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


def test_events_202_with_counts_then_duplicates(client: TestClient) -> None:
    events = [click(1), click(2), article(3)]
    h = {"x-api-key": KEY}
    r = client.post("/v1/events", content=orjson.dumps(events), headers=h)
    assert r.status_code == 202
    assert r.json() == {"accepted": 3, "duplicates": 0, "rejected": 0, "errors": []}
    # The same batch again, as {"events": [...]}, then as NDJSON: all duplicates.
    r = client.post("/v1/events", content=orjson.dumps({"events": events}), headers=h)
    assert r.json()["duplicates"] == 3
    nd = b"\n".join(orjson.dumps(e) for e in events)
    r = client.post("/v1/events", content=nd, headers={**h, "content-type": "application/x-ndjson"})
    assert r.status_code == 202 and r.json()["duplicates"] == 3


def test_events_partial_and_all_rejected_name_the_field(client: TestClient) -> None:
    h = {"x-api-key": KEY}
    bad = {**click(10), "event_time": "yesterday"}
    r = client.post("/v1/events", content=orjson.dumps([click(11), bad]), headers=h)
    assert r.status_code == 202
    assert r.json()["accepted"] == 1 and r.json()["rejected"] == 1
    assert r.json()["errors"][0]["field"] == "event_time"
    r = client.post("/v1/events", content=orjson.dumps([bad]), headers=h)
    assert r.status_code == 400
    assert r.json()["error"]["field"] == "event_time" and r.json()["rejected"] == 1
    r = client.post("/v1/events", content=b"{not json", headers=h)
    assert r.status_code == 400 and r.json()["error"]["field"] == "body"
    r = client.post("/v1/events", content=b"[]", headers=h)
    assert r.status_code == 400 and r.json()["error"]["field"] == "events"


def test_body_and_event_count_caps() -> None:
    api = Api(max_body_bytes=2_048, max_events_per_request=3)
    client, service, _ = make_client(api)
    h = {"x-api-key": KEY}
    big = orjson.dumps([article(1, text="x" * 4_000)])
    r = client.post("/v1/events", content=big, headers=h)
    assert r.status_code == 413 and r.json()["error"]["field"] == "body"
    r = client.post("/v1/events", content=orjson.dumps([click(i) for i in range(4)]), headers=h)
    assert r.status_code == 413 and r.json()["error"]["field"] == "events"
    assert service.events == {}  # nothing half-written


def test_rate_limit_per_key_with_injected_clock() -> None:
    clock = StepClock()
    client, _, _ = make_client(
        Api(rate_per_key_per_s=2.0, burst_per_key=3, public_feeds=True, rate_limit_feeds=True),
        clock=clock,
        key=None,
    )
    h = {"x-api-key": KEY}
    codes = [client.get("/v1/feed/u1", headers=h).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = client.get("/v1/feed/u1", headers=h)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    assert int(r.headers["retry-after"]) >= 1
    # Another key has its own bucket; anonymous (public) feed traffic is not limited here.
    assert client.get("/v1/feed/u1", headers={"x-api-key": "other-key"}).status_code == 200
    assert client.get("/v1/feed/u1").status_code == 200
    clock.t += 0.5  # one token back at 2 tokens/s
    assert client.get("/v1/feed/u1", headers=h).status_code == 200
    assert client.get("/v1/feed/u1", headers=h).status_code == 429


def test_health_ready_metrics_docs() -> None:
    client, _, _ = make_client()
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"ready": True, "reason": ""}
    client.get("/v1/feed/u1")
    client.get("/v1/feed/boom")
    text = client.get("/metrics").text
    assert 'feedstack_requests_total{code="2xx",endpoint="feed",protocol="http"} 1.0' in text
    assert 'feedstack_errors_total{endpoint="feed",kind="RuntimeError"} 1.0' in text
    assert "feedstack_request_duration_seconds_bucket" in text
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/feed/{user_id}", "/v1/events", "/healthz", "/readyz"} <= set(paths)
    assert "/v1/ping" not in paths
    r = client.get("/nowhere")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.delete("/v1/events")  # routing refusals go through the same table
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert "POST" in r.headers["allow"]


def test_metrics_off_is_a_404_and_requests_still_served() -> None:
    client, _, _ = make_client(metrics=False)
    assert client.get("/v1/feed/u1").status_code == 200
    assert client.get("/metrics").status_code == 404


def test_feeds_are_not_rate_limited_per_key_unless_configured() -> None:
    """A feeds key is a front end's: all its users' traffic. Limited at the load balancer,
    not here, unless api.rate_limit_feeds (events keys always are)."""
    clock = StepClock()
    client, _, _ = make_client(Api(rate_per_key_per_s=1.0, burst_per_key=2), clock=clock)
    assert {client.get("/v1/feed/u1").status_code for _ in range(20)} == {200}
    codes = [
        client.post("/v1/events", content=orjson.dumps([click(i)])).status_code for i in range(3)
    ]
    assert codes == [202, 202, 429]


def test_events_open_without_keys_only_when_configured() -> None:
    client, _, _ = make_client(Api(require_key=False), key=None)
    r = client.post("/v1/events", content=orjson.dumps([click(1)]))
    assert r.status_code == 202 and T0.year == 2026
    assert client.get("/v1/feed/u1").status_code == 200  # local runs: everything open


def test_feeds_need_a_key_with_the_feeds_scope() -> None:
    """Regression: anyone could read anyone's feed. Now a key is needed unless public_feeds."""
    anonymous = make_client(key=None)[0]
    r = anonymous.get("/v1/feed/u1")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
    assert "feeds" in r.json()["error"]["message"]
    assert anonymous.get("/v1/feed/u1", headers={"x-api-key": "nope"}).status_code == 403
    for key in (KEY, FEEDS_KEY, ADMIN_KEY):
        assert anonymous.get("/v1/feed/u1", headers={"x-api-key": key}).status_code == 200
    public = make_client(Api(public_feeds=True), key=None)[0]
    assert public.get("/v1/feed/u1").status_code == 200
    assert public.post("/v1/events", content=orjson.dumps([click(1)])).status_code == 401


def test_scopes_are_enforced() -> None:
    feeds_only = make_client(key=FEEDS_KEY)[0]
    assert feeds_only.get("/v1/feed/u1").status_code == 200
    r = feeds_only.post("/v1/events", content=orjson.dumps([click(1)]))
    assert r.status_code == 403 and "'events' scope" in r.json()["error"]["message"]
    assert r.json()["error"]["field"] == "api_key"


def test_fallback_reason_shown_only_to_admin_keys() -> None:
    """A feeds key cannot tell a cold user (no list) from a backend hiccup: every reason reads
    "degraded"; an admin key sees the reason itself."""
    api = Api()
    guard = Guard.from_spec(api, {api.keys_env: KEYS}, StepClock())
    service = SyntheticFeedService(fallback_users={"ghost": "cold_user"})
    client = TestClient(create_app(service, guard), raise_server_exceptions=False)
    seen = {
        key: client.get(f"/v1/feed/{user}", headers={"x-api-key": key}).json()["fallback"]
        for key in (KEY, FEEDS_KEY, ADMIN_KEY)
        for user in ("ghost",)
    }
    assert seen == {KEY: "degraded", FEEDS_KEY: "degraded", ADMIN_KEY: "cold_user"}
    assert client.get("/v1/feed/u1", headers={"x-api-key": FEEDS_KEY}).json()["fallback"] is None


def test_hostile_ids_and_nesting_are_4xx_naming_the_field(client: TestClient) -> None:
    """Regressions: a NUL id was accepted (202) and an event nested 1,000 deep answered 500."""
    r = client.get("/v1/feed/u%001")
    assert r.status_code == 422 and r.json()["error"]["field"] == "user_id"
    assert "U+0000 (NUL)" in r.json()["error"]["message"]
    assert client.get("/v1/feed/" + "u" * 129).status_code == 422
    bad = {**article(1), "article_id": "a\x00b"}
    r = client.post("/v1/events", content=orjson.dumps([bad]))
    assert r.status_code == 400 and r.json()["error"]["field"] == "article_id"
    deep = b"[" + b'{"type":"click","x":' + b"[" * 1000 + b"]" * 1000 + b"}]"
    r = client.post("/v1/events", content=deep)
    assert r.status_code == 400 and r.json()["error"]["field"] == "body"
    nd = b'{"type":"click","x":' + b"[" * 1000 + b"]" * 1000 + b"}"
    r = client.post("/v1/events", content=nd, headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 400 and "max_json_depth" in r.json()["error"]["message"]
