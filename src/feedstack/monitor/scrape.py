"""Live SLI counts: scrape a server's ``/metrics`` over time, or ask a Prometheus server.

Scraping: ``sli_sample`` turns one exposition text into cumulative (good, total) per SLO
(``prometheus_client.parser``); ``scrape_history`` takes ``samples`` scrapes ``interval_s`` apart
(clock and sleep injected) and slo.py evaluates the windows over them (see its "short history").
Prometheus: ``prometheus_report`` runs the ``increase`` queries of promql.py for each window over
Prometheus's HTTP API, so windows are as long as Prometheus's retention allows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from feedstack.core.errors import BackendUnavailable, InputError
from feedstack.core.redact import redact_text, redact_url
from feedstack.core.spec import Spec
from feedstack.monitor import promql
from feedstack.monitor.slo import (
    WORKBOOK_CONDITIONS,
    Sample,
    Slo,
    SloReport,
    WindowCounts,
    evaluate,
    evaluate_windows,
    spec_slos,
)


def sli_sample(text: str, t_s: float, spec: Spec) -> dict[str, Sample]:
    """Cumulative good/total of each of the spec's SLOs in one scrape of ``/metrics``."""
    from prometheus_client.parser import text_string_to_metric_families

    le = promql.latency_le(spec.latency.p95_ms)
    total = bad = lat_good = lat_total = 0.0
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise InputError(f"not a Prometheus exposition: {exc}") from None
    names = {f.name for f in families}
    if "feedstack_requests" not in names or promql.LATENCY not in names:
        raise InputError(
            f"no {promql.REQUESTS} or {promql.LATENCY} in the scrape: is this a feedstack "
            "server with metrics on?"
        )
    for family in families:
        for s in family.samples:
            if s.labels.get("endpoint") != "feed":
                continue
            if s.name == promql.REQUESTS:
                total += s.value
                if s.labels.get("code") == "5xx":
                    bad += s.value
            elif s.name == f"{promql.LATENCY}_bucket" and s.labels.get("le") == le:
                lat_good += s.value
            elif s.name == f"{promql.LATENCY}_count":
                lat_total += s.value
    availability, latency = spec_slos(spec.latency, spec.monitor)
    return {
        availability.name: Sample(t_s, total - bad, total),
        latency.name: Sample(t_s, lat_good, lat_total),
    }


def fetch_text(url: str, timeout_s: float = 5.0) -> str:
    import httpx

    try:
        resp = httpx.get(url, timeout=timeout_s)
        resp.raise_for_status()
    except httpx.HTTPError as exc:
        raise BackendUnavailable(
            f"cannot scrape {redact_url(url)}: {redact_text(str(exc))}"
        ) from None
    return resp.text


def scrape_history(
    fetch: Callable[[], str],
    spec: Spec,
    *,
    samples: int,
    interval_s: float,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, list[Sample]]:
    if samples < 1 or interval_s < 0:
        raise InputError(f"--samples must be >= 1 and --interval >= 0, got {samples}, {interval_s}")
    history: dict[str, list[Sample]] = {}
    for i in range(samples):
        if i:
            sleep(interval_s)
        for name, sample in sli_sample(fetch(), clock(), spec).items():
            history.setdefault(name, []).append(sample)
    return history


def scraped_reports(history: dict[str, list[Sample]], spec: Spec) -> list[SloReport]:
    return [evaluate(slo, history[slo.name]) for slo in spec_slos(spec.latency, spec.monitor)]


# ------------------------------------------------------------------------------ Prometheus
def prometheus_query(base_url: str, expr: str, timeout_s: float = 10.0) -> float:
    """An instant query whose result is one number (an empty vector is 0: no traffic)."""
    import httpx

    url = base_url.rstrip("/") + "/api/v1/query"
    try:
        resp = httpx.get(url, params={"query": expr}, timeout=timeout_s)
        resp.raise_for_status()
        body: dict[str, Any] = resp.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise BackendUnavailable(
            f"Prometheus query to {redact_url(url)} failed: {redact_text(str(exc))}"
        ) from None
    if body.get("status") != "success":
        raise BackendUnavailable(f"Prometheus refused {expr!r}: {body.get('error')}")
    result = body["data"]["result"]
    if not result:
        return 0.0
    return float(result[0]["value"][1])


def prometheus_report(
    slo: Slo,
    spec: Spec,
    query: Callable[[str], float],
) -> SloReport:
    """One SLO's report from ``increase`` over each window (windows assumed fully covered)."""
    availability, _ = spec_slos(spec.latency, spec.monitor)

    def counts(window_s: float) -> WindowCounts:
        w = f"{int(window_s)}s"
        if slo.name == availability.name:
            total = query(promql.availability_total(w))
            good = total - query(promql.availability_bad(w))
        else:
            total = query(promql.latency_total(w))
            good = query(promql.latency_good(w, spec.latency.p95_ms))
        return WindowCounts(window_s, good, total, window_s)

    return evaluate_windows(slo, counts, counts(slo.period_s), WORKBOOK_CONDITIONS)
