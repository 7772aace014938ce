"""API keys, request caps and the per-key rate limit: what both transports check before the
service is called.

Keys come from the environment variable named by ``api.keys_env`` (comma-separated), never from
feedstack.yaml. They are kept as SHA-256 digests and a presented key is looked up by its digest,
so the comparison time does not depend on how many leading characters of a real key were guessed.

The rate limit is a token bucket per key (rate ``r`` tokens/s, capacity ``burst``): a request takes
one token; an empty bucket answers 429 with the time until the next token. The clock is injected
(seconds, monotonic), so tests step it instead of sleeping.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from feedstack.core.spec import Api
from feedstack.serve.errors import (
    BadRequest,
    Forbidden,
    PayloadTooLarge,
    RateLimited,
    RequestInvalid,
    Unauthenticated,
)

MonotonicClock = Callable[[], float]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def keys_from_env(api: Api, environ: Mapping[str, str] | None = None) -> frozenset[str]:
    env = os.environ if environ is None else environ
    raw = env.get(api.keys_env, "")
    return frozenset(k.strip() for k in raw.split(",") if k.strip())


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
    key_digests: frozenset[bytes]
    limiter: RateLimiter

    @classmethod
    def from_spec(
        cls,
        api: Api,
        environ: Mapping[str, str] | None = None,
        clock: MonotonicClock = time.monotonic,
    ) -> Guard:
        keys = keys_from_env(api, environ)
        return cls(
            api,
            frozenset(_digest(k) for k in keys),
            RateLimiter(api.rate_per_key_per_s, api.burst_per_key, clock),
        )

    def authenticate(self, presented: str | None) -> bytes | None:
        """The key's digest (its identity for the rate limit), or None when keys are optional.

        Raises Unauthenticated without a key and Forbidden with an unknown one.
        """
        if not presented:
            if not self.api.require_key:
                return None
            hint = "" if self.key_digests else f" (the server has none: set {self.api.keys_env})"
            raise Unauthenticated(f"an API key is required (header X-API-Key){hint}", "api_key")
        digest = _digest(presented)
        if digest not in self.key_digests:
            raise Forbidden("the API key is not valid", "api_key")
        return digest

    def admit(self, key_digest: bytes | None) -> None:
        """Charge one request to the key's bucket (requests without a key are not limited here:
        anonymous feed traffic is limited at the load balancer)."""
        if key_digest is not None:
            self.limiter.admit(key_digest)

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

    def event_count(self, n_events: int) -> None:
        if n_events > self.api.max_events_per_request:
            raise PayloadTooLarge(
                f"{n_events} events exceed the limit of {self.api.max_events_per_request} "
                "per request",
                "events",
            )
        if n_events == 0:
            raise BadRequest("no events in the request", "events")
