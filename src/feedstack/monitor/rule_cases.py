"""promtool unit tests for the generated rules (``promtool test rules rules_test.yml``).

For every alert, one group of input series that must fire it and one that must not, built from
the same spec numbers as the rules (a threshold change moves the series with it). Series use
promtool's expanding notation: ``'a+bxn'`` is n+1 samples a, a+b, ..., one per ``interval``.
Expected labels and annotations are read from the generated rules so the two never disagree.
"""

from __future__ import annotations

from typing import Any

from feedstack.core.spec import Spec
from feedstack.monitor import promql
from feedstack.monitor.rules import SECONDS_PER_MONTH, alerting_rules, usd_per_request

FEED_OK = f'{promql.REQUESTS}{{endpoint="feed",protocol="http",code="2xx"}}'
FEED_5XX = f'{promql.REQUESTS}{{endpoint="feed",protocol="http",code="5xx"}}'


def _bucket(name: str, le: str) -> str:
    return f'{name}_bucket{{endpoint="feed",protocol="http",le="{le}"}}'


def _latency_series(per_min: int, minutes: int, slow: bool, spec: Spec) -> list[dict[str, str]]:
    """Feed latency histogram: every request under 10 ms (fast) or just above the p99 alert
    threshold (slow), plus the matching 2xx request counter."""
    le_slo = promql.latency_le(spec.latency.p95_ms)
    alert_s = spec.latency.p99_alert_ms / 1000
    edges = sorted({0.01, float(le_slo), alert_s, alert_s * 2})
    fast_edge = 0.01
    out = []
    for e in edges:
        in_bucket = e >= (alert_s * 2 if slow else fast_edge)
        rate = per_min if in_bucket else 0
        out.append({"series": _bucket(promql.LATENCY, repr(e)), "values": f"0+{rate}x{minutes}"})
    for name in (_bucket(promql.LATENCY, "+Inf"), f'{promql.LATENCY}_count{{endpoint="feed"}}'):
        out.append({"series": name, "values": f"0+{per_min}x{minutes}"})
    out.append({"series": FEED_OK, "values": f"0+{per_min}x{minutes}"})
    return out


def tests_document(spec: Spec, rule_file: str = "rules.yml") -> dict[str, Any]:
    alerts = {r["alert"]: r for r in alerting_rules(spec)}

    d, m, lag_s = spec.drift, spec.monitor, spec.freshness.feature_max_lag_s

    def expect(name: str, at: str, firing: bool, **labels: str) -> dict[str, Any]:
        rule = alerts[name]
        exp = []
        if firing:
            exp.append(
                {"exp_labels": {**rule["labels"], **labels}, "exp_annotations": rule["annotations"]}
            )
        return {"eval_time": at, "alertname": name, "exp_alerts": exp}

    groups: list[dict[str, Any]] = []

    # Latency: slow requests fire the p99 alert and the latency burn; fast ones neither.
    for slow in (True, False):
        groups.append(
            {
                "name": f"latency {'slow' if slow else 'fast'}",
                "interval": "1m",
                "input_series": _latency_series(100, 40, slow, spec),
                "alert_rule_test": [
                    expect("FeedstackLatencyP99High", "15m", slow),
                    expect("FeedstackLatencyBudgetBurn", "15m", slow),
                    expect("FeedstackLatencyBudgetBurnSlow", "15m", slow),
                    expect("FeedstackAvailabilityBudgetBurn", "15m", False),
                ],
            }
        )

    # Availability: 5xx start at minute 20 (a third of responses) and page; none before.
    groups.append(
        {
            "name": "availability errors",
            "interval": "1m",
            "input_series": [
                {"series": FEED_OK, "values": "0+100x80"},
                {"series": FEED_5XX, "values": "0x20 50+50x59"},
            ],
            "alert_rule_test": [
                expect("FeedstackAvailabilityBudgetBurn", "15m", False),
                expect("FeedstackAvailabilityBudgetBurn", "40m", True),
                expect("FeedstackAvailabilityBudgetBurnSlow", "40m", True),
            ],
        }
    )

    # Drift: only "topic" is past threshold with a significant test (categorical: no KS) and
    # enough values; dwell_ms is not significant, score has too few values, clicks is immaterial.
    kl_hi, psi_hi = d.kl_alert * 4, d.psi_alert * 2
    n_ok, n_few = m.drift_min_samples * 2, m.drift_min_samples // 2
    drift_series = [
        ("kl_divergence", "topic", kl_hi),
        ("psi", "topic", psi_hi),
        ("live_samples", "topic", n_ok),
        ("kl_divergence", "dwell_ms", kl_hi),
        ("ks_p_value", "dwell_ms", min(0.5, d.ks_p_value * 50)),
        ("live_samples", "dwell_ms", n_ok),
        ("kl_divergence", "score", kl_hi),
        ("ks_p_value", "score", d.ks_p_value / 10),
        ("live_samples", "score", n_few),
        ("kl_divergence", "clicks", d.kl_alert / 5),
        ("psi", "clicks", d.psi_alert / 5),
        ("ks_p_value", "clicks", d.ks_p_value / 100),
        ("live_samples", "clicks", n_ok),
    ]
    groups.append(
        {
            "name": "feature drift",
            "interval": "1m",
            "input_series": [
                {"series": f'feedstack_drift_{metric}{{feature="{f}"}}', "values": f"{v!r}x10"}
                for metric, f, v in drift_series
            ],
            "alert_rule_test": [expect("FeedstackFeatureDrift", "5m", True, feature="topic")],
        }
    )

    # Freshness: every event's features land after 2.5x the bound (fires) or within a quarter.
    for late in (True, False):
        edge = lag_s * 2.5 if late else lag_s / 4
        groups.append(
            {
                "name": f"feature lag {'late' if late else 'fresh'}",
                "interval": "1m",
                "input_series": [
                    {
                        "series": f'feedstack_feature_lag_seconds_bucket{{le="{e!r}"}}',
                        "values": f"0+{100 if e >= edge else 0}x30",
                    }
                    for e in sorted({lag_s / 4, lag_s, lag_s * 2.5})
                ]
                + [
                    {
                        "series": 'feedstack_feature_lag_seconds_bucket{le="+Inf"}',
                        "values": "0+100x30",
                    }
                ],
                "alert_rule_test": [expect("FeedstackFeatureLagHigh", "15m", late)],
            }
        )

    # Fallbacks: twice the cap fires, a fifth of it does not.
    cap = spec.registry.max_fallback_rate
    for high in (True, False):
        per_min = round(1000 * cap * (2 if high else 0.2))
        groups.append(
            {
                "name": f"fallbacks {'high' if high else 'low'}",
                "interval": "1m",
                "input_series": [
                    {"series": FEED_OK, "values": "0+1000x30"},
                    {
                        "series": 'feedstack_fallbacks_total{reason="timeout"}',
                        "values": f"0+{per_min}x30",
                    },
                ],
                "alert_rule_test": [expect("FeedstackFallbackRateHigh", "20m", high)],
            }
        )

    # CTR: 3 h at 5 % CTR, then 1 h at a CTR twice the alert's drop below it (fires) or the same
    # CTR (does not). The 7 d rate extrapolates over the 4 h there are, as in a fresh Prometheus;
    # a full week of samples would make promtool evaluate every rule ~10^4 times (a minute).
    base_clicks, steady_min, drop_min = 50, 180, 60
    dropped = round(base_clicks * (1 - 2 * m.ctr_drop_alert))
    for drop in (True, False):
        tail = dropped if drop else base_clicks
        groups.append(
            {
                "name": f"ctr {'drop' if drop else 'steady'}",
                "interval": "1m",
                "input_series": [
                    {
                        "series": "feedstack_impressions_total",
                        "values": f"0+1000x{steady_min + drop_min}",
                    },
                    {
                        "series": "feedstack_clicks_total",
                        "values": f"0+{base_clicks}x{steady_min} "
                        f"{base_clicks * steady_min + tail}+{tail}x{drop_min - 1}",
                    },
                ],
                "alert_rule_test": [expect("FeedstackCtrDrop", f"{steady_min + drop_min}m", drop)],
            }
        )

    # Cost: twice the request rate the budget allows fires; a tenth does not.
    budget_rps = spec.budget.compute_usd_per_month / (SECONDS_PER_MONTH * usd_per_request(spec))
    for over in (True, False):
        per_min = round(budget_rps * 60 * (2 if over else 0.1))
        groups.append(
            {
                "name": f"cost {'over' if over else 'under'}",
                "interval": "1m",
                "input_series": [{"series": FEED_OK, "values": f"0+{per_min}x120"}],
                "alert_rule_test": [expect("FeedstackProjectedCostOverBudget", "110m", over)],
            }
        )
    return {"rule_files": [rule_file], "evaluation_interval": "1m", "tests": groups}
