"""API keys with scopes from the environment: parsing, errors that never show a key."""

from __future__ import annotations

import pytest

from feedstack.core.errors import ConfigError
from feedstack.core.spec import Api
from feedstack.serve.auth import DEFAULT_SCOPES, api_key_entry, parse_keys
from feedstack.serve.errors import Forbidden, Unauthenticated
from feedstack.serve.security import Guard


def test_entries_with_and_without_scopes() -> None:
    keys = parse_keys(" web:feeds , ingest:events,ops:feeds+events+admin, plain ,,", "K")
    assert keys == {
        "web": {"feeds"},
        "ingest": {"events"},
        "ops": {"feeds", "events", "admin"},
        "plain": DEFAULT_SCOPES,
    }
    assert "admin" not in DEFAULT_SCOPES  # a bare key is never an admin key
    assert parse_keys("k:feeds,k:events", "K") == {"k": {"feeds", "events"}}
    assert api_key_entry("abc", "feeds", "admin") == "abc:feeds+admin"


@pytest.mark.parametrize("raw", ["s3cretkey:root", "s3cretkey:", ":feeds", "s3cretkey:feeds+x"])
def test_bad_entries_name_the_position_never_the_key(raw: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_keys(f"ok,{raw}", "FEEDSTACK_API_KEYS")
    assert "$FEEDSTACK_API_KEYS entry 2" in str(err.value)
    assert "s3cretkey" not in str(err.value)


def test_guard_scopes_public_feeds_and_local_runs() -> None:
    env = {"FEEDSTACK_API_KEYS": "web:feeds,ops:feeds+events+admin"}
    g = Guard.from_spec(Api(), env)
    assert g.authenticate("web", "feeds") is not None
    with pytest.raises(Forbidden, match="'events' scope"):
        g.authenticate("web", "events")
    with pytest.raises(Unauthenticated, match="'feeds' scope"):
        g.authenticate(None, "feeds")
    assert Guard.from_spec(Api(public_feeds=True), env).authenticate(None, "feeds") is None
    with pytest.raises(Unauthenticated):
        Guard.from_spec(Api(public_feeds=True), env).authenticate(None, "events")
    local = Guard.from_spec(Api(require_key=False), {})
    assert local.authenticate(None, "events") is None
    # What each may see of a fallback: the reason for admin keys and local runs only.
    web, ops = g.authenticate("web", "feeds"), g.authenticate("ops", "feeds")
    assert g.shown_fallback(web, "cold_user") == "degraded"
    assert g.shown_fallback(ops, "cold_user") == "cold_user"
    assert g.shown_fallback(web, None) is None
    assert Guard.from_spec(Api(public_feeds=True), env).shown_fallback(None, "x") == "degraded"
    assert local.shown_fallback(None, "cold_user") == "cold_user"
