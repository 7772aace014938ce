"""Rollout observations from a scrape of a serving replica's ``/metrics``.

The server counts, per arm (``champion`` = control, ``challenger`` = canary; monitor/metrics.py):
feed requests by outcome (``feedstack_arm_requests_total{arm,outcome}``), their request-path
latency (``feedstack_arm_request_duration_seconds``), items shown and clicks by model version and
arm (``feedstack_impressions_total``, ``feedstack_clicks_total``). This turns one exposition into
the cumulative counters ``observations_from_json`` takes, so ``feedstack rollout step
--metrics-url`` drives the controller from live traffic. Errors are the transport's 5xx answers
on the feed endpoint: they carry no arm (the request path degrades instead of failing, so a 5xx is
the process failing), so they are split between the arms by their share of requests; the error
guardrail then compares equal rates and only the fallback, latency and CTR guardrails tell the
arms apart.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

ARMS = {"challenger": "canary", "champion": "control"}


def _p99_ms(buckets: list[tuple[float, float]]) -> float:
    """The 99th percentile from cumulative histogram buckets ``(le, count)``: the upper bound of
    the first bucket holding 99 % of the observations (Prometheus' histogram_quantile without the
    interpolation, so an upper bound)."""
    buckets = sorted(buckets)
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return 0.0
    for le, count in buckets:
        if count >= 0.99 * total:
            return le * 1000.0 if le != float("inf") else buckets[-2][0] * 1000.0
    return 0.0


def observed_from_metrics(text: str) -> dict[str, dict[str, Any]]:
    """``{"canary": {...}, "control": {...}}`` (requests, errors, fallbacks, latency_p99_ms,
    impressions, clicks) from a Prometheus text exposition."""
    arms: dict[str, dict[str, float]] = {a: defaultdict(float) for a in ARMS.values()}
    buckets: dict[str, list[tuple[float, float]]] = {a: [] for a in ARMS.values()}
    errors_5xx = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            arm = ARMS.get(sample.labels.get("arm", ""))
            labels = sample.labels
            if (
                sample.name == "feedstack_requests_total"
                and labels.get("code") == "5xx"
                and labels.get("endpoint") == "feed"
            ):
                errors_5xx += sample.value
            if arm is None:
                continue
            if sample.name == "feedstack_arm_requests_total":
                arms[arm]["requests"] += sample.value
                if sample.labels.get("outcome") == "fallback":
                    arms[arm]["fallbacks"] += sample.value
            elif sample.name == "feedstack_arm_request_duration_seconds_bucket":
                buckets[arm].append((float(sample.labels["le"]), sample.value))
            elif sample.name == "feedstack_impressions_total":
                arms[arm]["impressions"] += sample.value
            elif sample.name == "feedstack_clicks_total":
                arms[arm]["clicks"] += sample.value
    out: dict[str, dict[str, Any]] = {}
    total = sum(c["requests"] for c in arms.values())
    for arm, counts in arms.items():
        share = counts["requests"] / total if total else 0.0
        out[arm] = {
            "requests": int(counts["requests"]),
            "errors": round(errors_5xx * share),
            "fallbacks": int(counts["fallbacks"]),
            "latency_p99_ms": round(_p99_ms(buckets[arm]), 3),
            "impressions": int(counts["impressions"]),
            "clicks": int(counts["clicks"]),
        }
    return out
