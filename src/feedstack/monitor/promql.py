"""The PromQL of our SLIs, in one place: the generated rules, the dashboard and
``feedstack monitor slo --prometheus`` all ask the same questions.

SLIs are over the feed endpoint (``endpoint="feed"``, both protocols):
- availability: bad = responses with ``code="5xx"``, total = all responses;
- latency: good = requests within the latency bucket at ``latency.p95_ms`` (the serving histogram
  has a bucket edge there: monitor/metrics.py LATENCY_BUCKETS_S), total = all requests.
"""

from __future__ import annotations

from feedstack.core.errors import ConfigError
from feedstack.monitor.metrics import LATENCY_BUCKETS_S

FEED = 'endpoint="feed"'
REQUESTS = "feedstack_requests_total"
LATENCY = "feedstack_request_duration_seconds"


def latency_le(threshold_ms: float) -> str:
    """The histogram bucket label at the threshold: the largest edge not above it (so "good"
    never counts a request slower than the threshold)."""
    threshold_s = threshold_ms / 1000.0
    edges = [e for e in LATENCY_BUCKETS_S if e <= threshold_s * (1 + 1e-9)]
    if not edges:
        raise ConfigError(
            f"latency.p95_ms = {threshold_ms}: below the smallest latency bucket "
            f"({LATENCY_BUCKETS_S[0] * 1000:g} ms)"
        )
    # prometheus_client writes le like Go's float formatting; for our edges that is repr().
    return repr(float(max(edges)))


def availability_bad(window: str) -> str:
    return f'sum(increase({REQUESTS}{{{FEED},code="5xx"}}[{window}]))'


def availability_total(window: str) -> str:
    return f"sum(increase({REQUESTS}{{{FEED}}}[{window}]))"


def latency_good(window: str, threshold_ms: float) -> str:
    le = latency_le(threshold_ms)
    return f'sum(increase({LATENCY}_bucket{{{FEED},le="{le}"}}[{window}]))'


def latency_total(window: str) -> str:
    return f"sum(increase({LATENCY}_count{{{FEED}}}[{window}]))"


def p99_seconds(window: str) -> str:
    return f"histogram_quantile(0.99, sum by (le) (rate({LATENCY}_bucket{{{FEED}}}[{window}])))"
