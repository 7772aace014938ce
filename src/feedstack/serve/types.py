"""What the transports (HTTP, gRPC) and the request path agree on.

The transports (serve/http.py, serve/grpc_server.py) know only ``FeedService``: they parse and
check the request, call the service, and map ``FeedstackError`` to a status in one place
(serve/errors.py). The service (serve/pipeline.py) knows nothing of HTTP or gRPC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class FeedItem:
    item_id: str
    score: float
    source: str  # the candidate source that proposed it ("covisit", "trending", "popular", ...)
    position: int  # 0-based position in the served list


@dataclass(frozen=True, slots=True)
class Feed:
    request_id: str
    user_id: str
    items: list[FeedItem]
    model_version: str
    arm: str = "champion"  # champion | challenger (canary) | an experiment arm
    # None when the full path answered; otherwise why it degraded ("candidates_timeout",
    # "cache_down", "cold_user", ...): counted in feedstack_fallbacks_total{reason}.
    fallback: str | None = None
    stage_ms: dict[str, float] = field(default_factory=dict)
    experiment: str | None = None  # the running A/B test this request was served under


@dataclass(frozen=True, slots=True)
class IngestCounts:
    accepted: int
    duplicates: int
    rejected: int
    errors: list[dict[str, str]] = field(default_factory=list)  # first few: field, reason


class FeedService(Protocol):
    def feed(
        self, user_id: str, k: int, region: str | None = None, request_id: str | None = None
    ) -> Feed:
        """The ranked feed for one user; never raises for a backend fault (it degrades)."""
        ...

    def ingest(self, payloads: Sequence[bytes]) -> IngestCounts:
        """Validate and append events (the ingestion pipeline); InputError for a bad batch."""
        ...

    def ready(self) -> tuple[bool, str]:
        """Whether models and caches are loaded, and what is missing if not."""
        ...
