"""The Grafana dashboard (``dashboard.json``): the same questions as the alert rules, as panels.

Grafana's dashboard JSON model (schemaVersion 39): time-series panels on a 24-column grid, a
``datasource`` template variable so the file imports into any Grafana with a Prometheus source.
Thresholds drawn on panels are the spec's numbers, the same ones the alerts use.
"""

from __future__ import annotations

from typing import Any

from feedstack.core.spec import Spec
from feedstack.monitor import promql
from feedstack.monitor.rules import (
    SECONDS_PER_MONTH,
    record_name,
    usd_per_request,
)
from feedstack.monitor.slo import spec_slos

DS = {"type": "prometheus", "uid": "${datasource}"}


def _panel(
    title: str,
    targets: list[tuple[str, str]],
    unit: str,
    threshold: float | None = None,
    description: str = "",
) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    if threshold is not None:
        steps.append({"color": "red", "value": threshold})
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": {"mode": "absolute", "steps": steps},
                "custom": {"thresholdsStyle": {"mode": "line" if threshold else "off"}},
            },
            "overrides": [],
        },
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def _quantile(q: float, metric: str, by: str, window: str = "5m", sel: str = "") -> str:
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{sel}[{window}])))"


def panels(spec: Spec) -> list[dict[str, Any]]:
    lat, d = spec.latency, spec.drift
    req = promql.REQUESTS
    ctr = "sum by (model_version) (rate(feedstack_clicks_total[1h])) / " + (
        "sum by (model_version) (rate(feedstack_impressions_total[1h]))"
    )
    ctr_arm = "sum by (arm) (rate(feedstack_clicks_total[1h])) / " + (
        "sum by (arm) (rate(feedstack_impressions_total[1h]))"
    )
    return [
        _panel(
            "Request latency p50 / p95 / p99 by endpoint",
            [
                (_quantile(q, promql.LATENCY, "endpoint"), f"p{round(q * 100)} {{{{endpoint}}}}")
                for q in (0.5, 0.95, 0.99)
            ],
            "s",
            lat.p99_alert_ms / 1000,
        ),
        _panel(
            "Stage latency p99 (cache, features, ranking)",
            [(_quantile(0.99, "feedstack_stage_duration_seconds", "stage"), "{{stage}}")],
            "s",
        ),
        _panel(
            "Error budget burn rate (x budget)",
            [
                (f"{record_name(slo.name, w)} / {slo.budget:g}", f"{slo.name} {w}")
                for slo in spec_slos(lat, spec.monitor)
                for w in ("5m", "1h", "6h")
            ],
            "short",
            14.4,
            "1 spends the budget exactly over the SLO period; pages at 14.4 (1h & 5m) and 6.",
        ),
        _panel(
            "Errors and fallbacks per second",
            [
                (
                    "sum by (endpoint, kind) (rate(feedstack_errors_total[5m]))",
                    "{{endpoint}} {{kind}}",
                ),
                ("sum by (reason) (rate(feedstack_fallbacks_total[5m]))", "fallback {{reason}}"),
            ],
            "reqps",
        ),
        _panel(
            "Fallback rate",
            [
                (
                    "sum(rate(feedstack_fallbacks_total[5m])) / "
                    f"sum(rate({req}{{{promql.FEED}}}[5m]))",
                    "fallback share",
                )
            ],
            "percentunit",
            spec.registry.max_fallback_rate,
        ),
        _panel(
            "Candidate-cache hit rate",
            [
                (
                    'sum(rate(feedstack_candidate_cache_lookups_total{result="hit"}[5m])) / '
                    "sum(rate(feedstack_candidate_cache_lookups_total[5m]))",
                    "hit rate",
                )
            ],
            "percentunit",
        ),
        _panel(
            "Candidate source mix (served items)",
            [
                (
                    "sum by (source) (rate(feedstack_served_items_total[5m])) / ignoring(source) "
                    "group_left sum(rate(feedstack_served_items_total[5m]))",
                    "{{source}}",
                )
            ],
            "percentunit",
        ),
        _panel(
            "Ranker score p10 / p50 / p90",
            [
                (_quantile(q, "feedstack_ranker_score", "job"), f"p{round(q * 100)}")
                for q in (0.1, 0.5, 0.9)
            ],
            "short",
        ),
        _panel(
            "Impressions and clicks per second by model version",
            [
                (
                    "sum by (model_version) (rate(feedstack_impressions_total[5m]))",
                    "impr {{model_version}}",
                ),
                (
                    "sum by (model_version) (rate(feedstack_clicks_total[5m]))",
                    "clicks {{model_version}}",
                ),
            ],
            "short",
        ),
        _panel(
            "CTR (1 h) by model version and by arm",
            [(ctr, "{{model_version}}"), (ctr_arm, "arm {{arm}}")],
            "percentunit",
        ),
        _panel(
            "Event to feature lag p99",
            [(_quantile(0.99, "feedstack_feature_lag_seconds", "job"), "lag p99")],
            "s",
            spec.freshness.feature_max_lag_s,
        ),
        _panel(
            "Stream worker queue depth",
            [("sum(feedstack_feature_queue_depth)", "events behind")],
            "short",
        ),
        _panel(
            "Ingest: accepted, duplicate, rejected (dead letters) per second",
            [("sum by (result) (rate(feedstack_ingest_events_total[5m]))", "{{result}}")],
            "short",
        ),
        _panel(
            "Feature drift: KL and PSI",
            [
                ("feedstack_drift_kl_divergence", "KL {{feature}}"),
                ("feedstack_drift_psi", "PSI {{feature}}"),
            ],
            "short",
            d.kl_alert,
            f"Alerts at KL > {d.kl_alert:g} or PSI > {d.psi_alert:g} (numeric: KS p < "
            f"{d.ks_p_value:g} too).",
        ),
        _panel(
            "Projected monthly compute cost at live traffic",
            [
                (
                    f"sum(rate({req}{{{promql.FEED}}}[1h])) * {SECONDS_PER_MONTH:.0f} * "
                    f"{usd_per_request(spec):.6g}",
                    "USD / month",
                )
            ],
            "currencyUSD",
            spec.budget.compute_usd_per_month,
        ),
    ]


def dashboard(spec: Spec) -> dict[str, Any]:
    ps = panels(spec)
    for i, p in enumerate(ps):
        p["id"] = i + 1
        p["gridPos"] = {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)}
    return {
        "title": f"feedstack: {spec.name}",
        "uid": "feedstack-overview",
        "tags": ["feedstack"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                }
            ]
        },
        "panels": ps,
    }
