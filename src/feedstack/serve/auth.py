"""API keys and their scopes: who may read feeds, post events, see internals.

Keys are secrets: they come from the environment variable named by ``api.keys_env``
(``FEEDSTACK_API_KEYS``), never from feedstack.yaml, as comma-separated entries ``KEY`` or
``KEY:SCOPE+SCOPE``:

    FEEDSTACK_API_KEYS="web-7f3a:feeds,ingest-91c2:events,ops-55d0:feeds+events+admin"

    feeds    GET /v1/feed, Feed/GetFeed (unless ``api.public_feeds``)
    events   POST /v1/events, Events/Ingest
    admin    internals: feed responses name the real fallback reason (``cold_user`` tells that
             a user has no list, so it is not shown to anyone else) and admin endpoints

A key without ``:SCOPES`` has ``feeds`` and ``events`` (what a front end needs; never admin).
A key containing ``:`` must name its scopes. Keys are kept as SHA-256 digests and a presented
key is looked up by its digest, so the time a comparison takes does not depend on how many
leading characters of a real key were guessed. Errors name the entry's position, never a key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from feedstack.core.errors import ConfigError

SCOPES = ("feeds", "events", "admin")
DEFAULT_SCOPES = frozenset({"feeds", "events"})
# What a caller without the admin scope sees instead of the real fallback reason: one value for
# every reason, so a cold user cannot be told from a backend hiccup.
PUBLIC_FALLBACK = "degraded"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated key: its digest (the rate limit's identity) and its scopes."""

    digest: bytes
    scopes: frozenset[str]

    def may(self, scope: str) -> bool:
        return scope in self.scopes


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def parse_entry(entry: str, where: str) -> tuple[str, frozenset[str]]:
    """``KEY`` or ``KEY:SCOPE+SCOPE`` -> (key, scopes); ``where`` names the entry in errors."""
    key, sep, tail = entry.rpartition(":")
    if not sep:
        return entry, DEFAULT_SCOPES
    scopes = frozenset(s.strip() for s in tail.split("+") if s.strip())
    unknown = sorted(scopes - set(SCOPES))
    if not key or not scopes or unknown:
        raise ConfigError(
            f"{where}: expected KEY or KEY:SCOPE+SCOPE with scopes among {', '.join(SCOPES)}"
            + (f"; unknown scope(s) {unknown}" if unknown else "")
        )
    return key, scopes


def parse_keys(raw: str, env_name: str) -> dict[str, frozenset[str]]:
    """Every key of ``$env_name`` with its scopes (a key listed twice: the union)."""
    out: dict[str, frozenset[str]] = {}
    entries = [e.strip() for e in raw.split(",")]
    for i, entry in enumerate(e for e in entries if e):
        key, scopes = parse_entry(entry, f"${env_name} entry {i + 1}")
        out[key] = out.get(key, frozenset()) | scopes
    return out


def digests(keys: Mapping[str, frozenset[str]]) -> dict[bytes, frozenset[str]]:
    return {digest(k): s for k, s in keys.items()}


def api_key_entry(key: str, *scopes: str) -> str:
    """One ``$FEEDSTACK_API_KEYS`` entry (the demo and the benchmarks make their keys so)."""
    return f"{key}:{'+'.join(scopes)}" if scopes else key
