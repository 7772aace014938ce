"""Prometheus recording and alerting rules, generated from the spec: every threshold is the spec's.

``feedstack monitor rules --out DIR`` writes ``rules.yml`` (this module), ``rules_test.yml``
(rule_cases.py: promtool unit tests that fire and do not fire each alert) and ``dashboard.json``
(dashboard.py). ``promtool check rules`` and ``promtool test rules`` run on them in the tests.

Recording rules: the bad-event ratio of each SLI over the workbook windows
(``feedstack:sli_<slo>_bad:ratio_rate<w>``). Alerts:

- FeedstackLatencyP99High: feed p99 over 5 m > ``latency.p99_alert_ms``, for 2 m (page).
- Feedstack{Availability,Latency}BudgetBurn: 1 h & 5 m > 14.4x or 6 h & 30 m > 6x (page);
  ...BurnSlow: 3 d & 6 h > 1x (ticket). Objectives ``latency.availability`` and 95 % within
  ``latency.p95_ms``.
- FeedstackFeatureDrift: KL > ``drift.kl_alert`` or PSI > ``drift.psi_alert``, unless a KS
  p-value (numeric features) is >= ``drift.ks_p_value``, with >= ``monitor.drift_min_samples``
  live values: the same verdict as drift.py.
- FeedstackFeatureLagHigh: event->feature lag p99 over 5 m > ``freshness.feature_max_lag_s``,
  for 2 m (page).
- FeedstackFallbackRateHigh: fallbacks / feed requests over 5 m >
  ``registry.max_fallback_rate``, for 5 m (page).
- FeedstackCtrDrop: CTR over 1 h < (1 - ``monitor.ctr_drop_alert``) x CTR over 7 d, for 15 m.
- FeedstackProjectedCostOverBudget: feed requests/s over 1 h x seconds per month x $/request >
  ``budget.compute_usd_per_month``, for 30 m (ticket).
"""

from __future__ import annotations

from typing import Any

from feedstack.core.spec import Spec
from feedstack.monitor import promql
from feedstack.monitor.slo import WORKBOOK_CONDITIONS, duration_label, spec_slos

# Average Gregorian month: 365.2425 / 12 days (the cost planner's month).
SECONDS_PER_MONTH = 365.2425 / 12 * 86_400
DAYS_PER_MONTH = 365.2425 / 12


def usd_per_request(spec: Spec) -> float:
    """The cost of one feed request: the spec's, or the budget spread over the planned traffic."""
    if spec.monitor.usd_per_million_requests is not None:
        return spec.monitor.usd_per_million_requests / 1e6
    t = spec.traffic
    planned_per_month = t.daily_active_users * t.requests_per_user_per_day * DAYS_PER_MONTH
    return spec.budget.compute_usd_per_month / planned_per_month


def record_name(slo: str, window: str) -> str:
    return f"feedstack:sli_{slo}_bad:ratio_rate{window}"


def slo_names(spec: Spec) -> tuple[str, str]:
    availability, latency = spec_slos(spec.latency, spec.monitor)
    return availability.name, latency.name


def windows() -> list[str]:
    out: list[str] = []
    for c in WORKBOOK_CONDITIONS:
        for w in (duration_label(c.short_s), duration_label(c.long_s)):
            if w not in out:
                out.append(w)
    return out


def recording_rules(spec: Spec) -> list[dict[str, Any]]:
    avail, lat = slo_names(spec)
    rules = []
    for w in windows():
        rules.append(
            {
                "record": record_name(avail, w),
                "expr": f"{promql.availability_bad(w)} / {promql.availability_total(w)}",
            }
        )
        good, total = promql.latency_good(w, spec.latency.p95_ms), promql.latency_total(w)
        rules.append({"record": record_name(lat, w), "expr": f"1 - {good} / {total}"})
    return rules


def _burn_expr(slo: str, budget: float, severity: str) -> str:
    parts = []
    for c in WORKBOOK_CONDITIONS:
        if c.severity != severity:
            continue
        threshold = _num(c.factor * budget)
        long, short = (
            record_name(slo, duration_label(c.long_s)),
            record_name(slo, duration_label(c.short_s)),
        )
        parts.append(f"({long} > {threshold} and {short} > {threshold})")
    return " or ".join(parts)


def alerting_rules(spec: Spec) -> list[dict[str, Any]]:
    lat, d, m = spec.latency, spec.drift, spec.monitor
    availability, latency = spec_slos(lat, m)
    rules: list[dict[str, Any]] = [
        _alert(
            "FeedstackLatencyP99High",
            f"{promql.p99_seconds('5m')} > {_num(lat.p99_alert_ms / 1000)}",
            "2m",
            "page",
            f"Feed p99 latency above {lat.p99_alert_ms:g} ms",
            "Add capacity or find the slow stage (feedstack_stage_duration_seconds).",
        )
    ]
    for slo in (availability, latency):
        title = slo.name.split("_")[0].capitalize()
        for severity, suffix, windows_text in (
            ("page", "", "1h/5m at 14.4x or 6h/30m at 6x"),
            ("ticket", "Slow", "3d/6h at 1x"),
        ):
            rules.append(
                _alert(
                    f"Feedstack{title}BudgetBurn{suffix}",
                    _burn_expr(slo.name, slo.budget, severity),
                    "0m",
                    severity,
                    f"{slo.name} SLO ({slo.objective:g}) error budget burning ({windows_text})",
                    "Roll back the last change or add capacity; see the SLO dashboard.",
                    slo=slo.name,
                )
            )
    divergence = (
        f"(feedstack_drift_kl_divergence > {_num(d.kl_alert)} "
        f"or feedstack_drift_psi > {_num(d.psi_alert)})"
    )
    rules += [
        _alert(
            "FeedstackFeatureDrift",
            f"{divergence} unless on(feature) (feedstack_drift_ks_p_value >= {_num(d.ks_p_value)})"
            f" and on(feature) (feedstack_drift_live_samples >= {m.drift_min_samples})",
            "0m",
            "ticket",
            f"Feature drift: KL > {d.kl_alert:g} or PSI > {d.psi_alert:g}"
            f" (KS p < {d.ks_p_value:g})",
            "Retrain (feedstack monitor drift --retrain) or check the upstream data.",
        ),
        _alert(
            "FeedstackFeatureLagHigh",
            "histogram_quantile(0.99, sum by (le) (rate(feedstack_feature_lag_seconds_bucket[5m])))"
            f" > {_num(spec.freshness.feature_max_lag_s)}",
            "2m",
            "page",
            f"Event to feature lag p99 above {spec.freshness.feature_max_lag_s:g} s",
            "The stream worker is behind: check feedstack_feature_queue_depth, add workers.",
        ),
        _alert(
            "FeedstackFallbackRateHigh",
            "sum(rate(feedstack_fallbacks_total[5m])) / "
            f"sum(rate({promql.REQUESTS}{{{promql.FEED}}}[5m])) > "
            f"{_num(spec.registry.max_fallback_rate)}",
            "5m",
            "page",
            f"More than {spec.registry.max_fallback_rate:.0%} of feeds answered by a fallback",
            "A backend (candidate cache, online store) is slow or down.",
        ),
        _alert(
            "FeedstackCtrDrop",
            f"{_ctr('1h')} < {_num(1 - m.ctr_drop_alert)} * {_ctr('7d')}",
            "15m",
            "ticket",
            f"CTR over 1 h more than {m.ctr_drop_alert:.0%} below the trailing week",
            "Check the model version and drift; roll back if a new model is live.",
        ),
        _alert(
            "FeedstackProjectedCostOverBudget",
            f"sum(rate({promql.REQUESTS}{{{promql.FEED}}}[1h])) * {_num(SECONDS_PER_MONTH)} * "
            f"{_num(usd_per_request(spec))} > {_num(spec.budget.compute_usd_per_month)}",
            "30m",
            "ticket",
            f"Live traffic projects above ${spec.budget.compute_usd_per_month:,.0f}/month",
            "Revisit capacity (feedstack plan) or the budget.",
        ),
    ]
    return rules


def rules_document(spec: Spec) -> dict[str, Any]:
    return {
        "groups": [
            {"name": "feedstack-slo-recording", "rules": recording_rules(spec)},
            {"name": "feedstack-alerts", "rules": alerting_rules(spec)},
        ]
    }


def _ctr(window: str) -> str:
    return (
        f"(sum(rate(feedstack_clicks_total[{window}])) / "
        f"sum(rate(feedstack_impressions_total[{window}])))"
    )


def _alert(
    name: str,
    expr: str,
    for_: str,
    severity: str,
    summary: str,
    action: str,
    **labels: str,
) -> dict[str, Any]:
    # Annotations are static text (no $value templates) so promtool tests can match them exactly.
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if for_ != "0m":
        rule["for"] = for_
    rule["labels"] = {"severity": severity, **labels}
    rule["annotations"] = {"summary": summary, "action": action}
    return rule


def _num(x: float) -> str:
    """A threshold as PromQL text: shortest exact-enough decimal."""
    return f"{x:.10g}"
