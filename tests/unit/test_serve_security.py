"""API keys, caps, the token bucket (injected clock), the error table and the spec's api section."""

from __future__ import annotations

import grpc
import pytest

from feedstack.core.errors import BackendUnavailable, ConfigError, InputError
from feedstack.core.spec import Api, parse_spec
from feedstack.serve.errors import (
    Forbidden,
    PayloadTooLarge,
    RateLimited,
    RequestInvalid,
    Unauthenticated,
    reply_for,
)
from feedstack.serve.security import Guard, TokenBucket, keys_from_env


def test_token_bucket_known_answer() -> None:
    b = TokenBucket(rate=10.0, burst=2, now=0.0)
    assert b.take(0.0) == 0.0 and b.take(0.0) == 0.0  # the burst
    assert b.take(0.0) == pytest.approx(0.1)  # empty: one token in 1/rate s
    assert b.take(0.05) == pytest.approx(0.05)  # half a token refilled
    assert b.take(0.1) == 0.0
    assert b.take(10.0) == 0.0 and b.take(10.0) == 0.0  # refills only up to the burst
    assert b.take(10.0) > 0.0


def test_guard_rate_limit_per_key() -> None:
    t = [0.0]
    api = Api(rate_per_key_per_s=1.0, burst_per_key=1)
    g = Guard.from_spec(api, {"FEEDSTACK_API_KEYS": "a,b"}, clock=lambda: t[0])
    a, b = g.authenticate("a"), g.authenticate("b")
    g.admit(a)
    g.admit(b)
    with pytest.raises(RateLimited) as err:
        g.admit(a)
    assert err.value.retry_after_s == pytest.approx(1.0)
    t[0] = 1.0
    g.admit(a)
    g.admit(None)  # anonymous: not limited here


def test_keys_from_env_and_auth_errors() -> None:
    api = Api(keys_env="MY_KEYS")
    assert keys_from_env(api, {"MY_KEYS": " k1 , ,k2"}) == {"k1", "k2"}
    g = Guard.from_spec(api, {})
    with pytest.raises(Unauthenticated, match="MY_KEYS"):
        g.authenticate(None)
    with pytest.raises(Forbidden):
        Guard.from_spec(api, {"MY_KEYS": "k1"}).authenticate("k2")
    assert Guard.from_spec(Api(require_key=False), {}).authenticate(None) is None


def test_caps() -> None:
    g = Guard.from_spec(Api(k_max=50, k_default=10, max_body_bytes=2048), {})
    assert g.feed_k(None) == 10 and g.feed_k(0) == 10 and g.feed_k(50) == 50
    with pytest.raises(RequestInvalid) as err:
        g.feed_k(51)
    assert err.value.field == "k"
    g.body_size(2048)
    with pytest.raises(PayloadTooLarge):
        g.body_size(2049)
    with pytest.raises(PayloadTooLarge):
        g.event_count(1001)
    with pytest.raises(InputError):
        g.event_count(0)


def test_error_table() -> None:
    r = reply_for(RequestInvalid("k must be ...", "k"))
    assert (r.http_status, r.grpc_code, r.field) == (422, grpc.StatusCode.INVALID_ARGUMENT, "k")
    assert reply_for(InputError("bad")).http_status == 400
    assert reply_for(RateLimited("slow down", 0.5)).http_status == 429
    hidden = reply_for(BackendUnavailable("redis://secret-host:6379 refused"))
    assert hidden.http_status == 503 and "secret" not in hidden.message
    assert reply_for(ConfigError("path /etc/x")).body() == {
        "error": {"code": "misconfigured", "message": "the server is misconfigured"}
    }
    assert reply_for(KeyError("x")).body() == {
        "error": {"code": "internal", "message": "internal error"}
    }


def test_spec_api_section() -> None:
    spec = parse_spec({"api": {"k_max": 30, "k_default": 10}})
    assert spec.api.k_max == 30
    with pytest.raises(ConfigError, match="k_default"):
        parse_spec({"api": {"k_max": 5}})
    with pytest.raises(ConfigError, match=r"api\.keys"):
        parse_spec({"api": {"keys": ["a"]}})  # keys are secrets: environment only
