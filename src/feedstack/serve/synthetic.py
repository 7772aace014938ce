"""A synthetic ``FeedService``: deterministic ranked items at a chosen CPU cost per request.

Not a recommender: the transports' baseline. The load benchmark serves it to separate what the
transport costs from what ranking costs, the HTTP and gRPC tests serve it as a known answer, and
``feedstack serve --service synthetic`` runs the API without a trained project. Events go through
the real ``Validator`` (same rules as ``feedstack ingest``) and are kept in memory.
"""

from __future__ import annotations

import threading
import time
import uuid
import zlib
from collections.abc import Mapping, Sequence

from feedstack.core.clock import Clock, SystemClock
from feedstack.core.spec import Ingest
from feedstack.ingest.records import RawRecord
from feedstack.ingest.validate import Validator
from feedstack.serve.types import Feed, FeedItem, IngestCounts

SOURCES = ("als", "covisit", "content", "trending", "popular")
MAX_ERRORS_SHOWN = 5


class SyntheticFeedService:
    """Items ``a{n}`` in an order fixed by the user id; ``cpu_ms`` of busy work per feed call
    (a stand-in for ranking 500 candidates). Users in ``failing_users`` raise a plain
    ``RuntimeError`` (an internal bug), which the transports must hide; users in
    ``fallback_users`` are answered with that fallback reason (what a caller may see of it is
    the transports' decision)."""

    model_version = "synthetic-1"

    def __init__(
        self,
        n_items: int = 500,
        cpu_ms: float = 0.0,
        limits: Ingest | None = None,
        clock: Clock | None = None,
        failing_users: frozenset[str] = frozenset(),
        fallback_users: Mapping[str, str] | None = None,
    ) -> None:
        self.n_items = n_items
        self.cpu_ms = cpu_ms
        self.failing_users = failing_users
        self.fallback_users = dict(fallback_users or {})
        self.validator = Validator(limits or Ingest(), clock or SystemClock())
        self.events: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def feed(
        self, user_id: str, k: int, region: str | None = None, request_id: str | None = None
    ) -> Feed:
        if user_id in self.failing_users:
            raise RuntimeError(f"synthetic failure at /srv/secret/path for {user_id}")
        if self.cpu_ms > 0:
            end = time.perf_counter() + self.cpu_ms / 1000.0
            while time.perf_counter() < end:
                pass
        seed = zlib.crc32(user_id.encode())
        items = []
        for pos in range(min(k, self.n_items)):
            n = (seed + pos * 7919) % self.n_items
            items.append(FeedItem(f"a{n}", round(1.0 - pos / (k + 1), 6), SOURCES[n % 5], pos))
        reason = self.fallback_users.get(user_id)
        version = "fallback" if reason else self.model_version
        return Feed(request_id or uuid.uuid4().hex, user_id, items, version, fallback=reason)

    def ingest(self, payloads: Sequence[bytes]) -> IngestCounts:
        records = [RawRecord("api", i + 1, p) for i, p in enumerate(payloads)]
        events, stored, rejections = self.validator.check_batch(records)
        accepted = duplicates = 0
        with self._lock:
            for event, raw in zip(events, stored, strict=True):
                if event.event_id in self.events:
                    duplicates += 1
                else:
                    self.events[event.event_id] = raw
                    accepted += 1
        errors = [
            {"index": str(r.line - 1), "field": r.field, "reason": r.reason}
            for r in rejections[:MAX_ERRORS_SHOWN]
        ]
        return IngestCounts(accepted, duplicates, len(rejections), errors)

    def ready(self) -> tuple[bool, str]:
        return True, ""
