"""What both transports check before the service is called: the API key and its scope
(serve/auth.py), request caps, the per-key rate limit, and what a key may see of a feed.

The rate limit is a token bucket per key (rate ``r`` tokens/s, capacity ``burst``): a request takes
one token; an empty bucket answers 429 with the time until the next token. The clock is injected
(seconds, monotonic), so tests step it instead of sleeping.

Who needs a key (``api`` section of the spec): feeds need one with the ``feeds`` scope unless
``api.public_feeds`` (then anonymous feed traffic is limited at the load balancer); events need
the ``events`` scope; ``api.require_key: false`` opens everything (local runs only).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from feedstack.core.spec import Api, Ingest
from feedstack.ingest.limits import json_depth
from feedstack.serve.auth import PUBLIC_FALLBACK, Principal, digest, digests, parse_keys
from feedstack.serve.errors import (
    BadRequest,
    Forbidden,
    PayloadTooLarge,
    RateLimited,
    RequestInvalid,
    Unauthenticated,
)

MonotonicClock = Callable[[], float]


def scoped_keys_from_env(
    api: Api, environ: Mapping[str, str] | None = None
) -> dict[str, frozenset[str]]:
    """Every key of ``$api.keys_env`` with its scopes (ConfigError for a malformed entry)."""
    env = os.environ if environ is None else environ
    return parse_keys(env.get(api.keys_env, ""), api.keys_env)


def keys_from_env(api: Api, environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """The keys alone (scopes dropped)."""
    return frozenset(scoped_keys_from_env(api, environ))


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; starts full. Not thread-safe on its own."""

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.updated = now

    def take(self, now: float) -> float:
        """Take one token; returns 0.0 on success, else the seconds until one is available."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """One token bucket per key (keys are authenticated first, so the map stays small)."""

    def __init__(self, rate: float, burst: int, clock: MonotonicClock = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[bytes, TokenBucket] = {}
        self._lock = threading.Lock()  # the gRPC server calls from a thread pool

    def admit(self, key_digest: bytes) -> None:
        with self._lock:
            now = self.clock()
            bucket = self._buckets.get(key_digest)
            if bucket is None:
                bucket = self._buckets[key_digest] = TokenBucket(self.rate, self.burst, now)
            wait_s = bucket.take(now)
        if wait_s > 0.0:
            raise RateLimited(
                f"rate limit of {self.rate:g} requests/s per key exceeded; retry in {wait_s:.3f} s",
                retry_after_s=wait_s,
            )


@dataclass(frozen=True)
class Guard:
    """Every check a request passes through; transports call these, in this order."""

    api: Api
    keys: Mapping[bytes, frozenset[str]]  # key digest -> scopes
    limiter: RateLimiter
    max_json_depth: int = Ingest().max_json_depth

    @classmethod
    def from_spec(
        cls,
        api: Api,
        environ: Mapping[str, str] | None = None,
        clock: MonotonicClock = time.monotonic,
        ingest: Ingest | None = None,
    ) -> Guard:
        return cls(
            api,
            digests(scoped_keys_from_env(api, environ)),
            RateLimiter(api.rate_per_key_per_s, api.burst_per_key, clock),
            (ingest or Ingest()).max_json_depth,
        )

    @property
    def key_digests(self) -> frozenset[bytes]:
        return frozenset(self.keys)

    def authenticate(self, presented: str | None, scope: str = "events") -> Principal | None:
        """The key's principal (its identity for the rate limit, its scopes), or None for a
        request that may go without a key (``api.public_feeds`` for feeds, or no keys required
        at all). Raises Unauthenticated without a needed key, Forbidden with an unknown key or
        one that lacks ``scope``."""
        if not presented:
            if not self.api.require_key or (scope == "feeds" and self.api.public_feeds):
                return None
            hint = "" if self.keys else f" (the server has none: set {self.api.keys_env})"
            raise Unauthenticated(
                f"an API key with the {scope!r} scope is required (header X-API-Key){hint}",
                "api_key",
            )
        d = digest(presented)
        scopes = self.keys.get(d)
        if scopes is None:
            raise Forbidden("the API key is not valid", "api_key")
        if scope not in scopes:
            raise Forbidden(f"the API key lacks the {scope!r} scope", "api_key")
        return Principal(d, scopes)

    def admit(self, who: Principal | None, scope: str = "events") -> None:
        """Charge one request to the key's bucket. Not limited here: requests without a key
        (anonymous public feeds) and feed requests unless ``api.rate_limit_feeds``; both are
        limited at the load balancer."""
        if who is None or (scope == "feeds" and not self.api.rate_limit_feeds):
            return
        self.limiter.admit(who.digest)

    def shown_fallback(self, who: Principal | None, reason: str | None) -> str | None:
        """The fallback reason this caller may see: the real one for an admin key (and on a
        server that requires no keys, a local run), else ``degraded`` for every reason, so the
        answer does not tell whether the user exists (``cold_user``)."""
        if reason is None:
            return None
        if (who is not None and who.may("admin")) or (who is None and not self.api.require_key):
            return reason
        return PUBLIC_FALLBACK

    def feed_k(self, k: int | None) -> int:
        if k is None or k == 0:
            return self.api.k_default
        if not 1 <= k <= self.api.k_max:
            raise RequestInvalid(f"k must be between 1 and {self.api.k_max}, got {k}", "k")
        return k

    def body_size(self, n_bytes: int) -> None:
        if n_bytes > self.api.max_body_bytes:
            raise PayloadTooLarge(
                f"body of {n_bytes} bytes exceeds the limit of {self.api.max_body_bytes} bytes",
                "body",
            )

    def body_depth(self, body: bytes) -> None:
        """A JSON body nested deeper than its events may be (``ingest.max_json_depth``, plus the
        array and the ``{"events": [...]}`` around them) is refused before it is parsed."""
        bound = self.max_json_depth + 2
        if body.count(b"[") + body.count(b"{") > bound and json_depth(body) > bound:
            raise BadRequest(
                f"body nested {json_depth(body)} levels deep: events may be "
                f"{self.max_json_depth} deep (ingest.max_json_depth)",
                "body",
            )

    def event_count(self, n_events: int) -> None:
        if n_events > self.api.max_events_per_request:
            raise PayloadTooLarge(
                f"{n_events} events exceed the limit of {self.api.max_events_per_request} "
                "per request",
                "events",
            )
        if n_events == 0:
            raise BadRequest("no events in the request", "events")
