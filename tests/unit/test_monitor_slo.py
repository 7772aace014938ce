"""Multi-window, multi-burn-rate SLO evaluation: known answers from the SRE workbook."""

from __future__ import annotations

import pytest

from feedstack.core.errors import InputError
from feedstack.monitor.slo import (
    WORKBOOK_CONDITIONS,
    Sample,
    Slo,
    evaluate,
    window_counts,
)

SLO = Slo("availability", 0.999, 30 * 86_400.0)


def _series(minutes: int, per_min: int, bad_per_min: list[int]) -> list[Sample]:
    """One sample a minute; ``bad_per_min[i]`` bad events in minute i (cumulative counters)."""
    out, good, total = [Sample(0.0, 0.0, 0.0)], 0.0, 0.0
    for m in range(minutes):
        total += per_min
        good += per_min - bad_per_min[m]
        out.append(Sample((m + 1) * 60.0, good, total))
    return out


def test_burn_rate_one_spends_the_budget_exactly() -> None:
    samples = _series(120, 1000, [1] * 120)  # 0.1 % bad = the budget's rate
    report = evaluate(SLO, samples)
    for c in report.conditions[:2]:
        assert c.long_burn == pytest.approx(1.0) and c.short_burn == pytest.approx(1.0)
        assert not c.firing
    assert report.budget_remaining == pytest.approx(0.0, abs=1e-9)


def test_full_outage_pages_on_1h_5m_only_after_enough_budget_burns() -> None:
    # 2 h steady at 0.05 % bad, then 100 % bad: the 1 h window passes 14.4x once
    # bad/total > 1.44 %, i.e. after about 0.0144 * 60 min = 52 s of outage (workbook: "2 % of
    # the budget"); the 6 h/30 m condition needs 6x over 6 h.
    steady = [0] * 120
    steady[::2] = [1] * 60
    samples = _series(122, 1000, [*steady, 1000, 1000])
    report = evaluate(SLO, samples)
    page_fast, page_slow, _ticket = report.conditions
    assert page_fast.firing
    # 1 h window: 58 steady minutes (29 bad) + 2000 bad, of 60000 -> (2029 / 60000) / 0.001
    assert page_fast.long_burn == pytest.approx(2029 / 60_000 / 0.001)
    assert page_fast.short_burn == pytest.approx((2000 + 1) / 5000 / 0.001)
    assert page_slow.long_burn == pytest.approx((2000 + 60) / 122_000 / 0.001)
    assert page_slow.firing  # 2060 / 122000 = 1.7 % > 0.6 %
    assert not page_slow.long.complete  # only 122 minutes of history for a 6 h window
    assert report.to_json()["firing"] == ["page 1h/5m", "page 6h/30m", "ticket 3d/6h"]
    assert report.budget_remaining is not None and report.budget_remaining < 0


def test_short_blip_does_not_page() -> None:
    # One bad minute (1 % of an hour) a while ago: the 5 m window has recovered.
    bad = [0] * 120
    bad[100] = 1000
    report = evaluate(SLO, _series(120, 1000, bad))
    assert not report.conditions[0].firing
    assert report.conditions[0].long_burn > 14.4  # the long window alone would have paged


def test_short_history_is_partial_and_single_sample_counts_since_start() -> None:
    one = [Sample(100.0, 990.0, 1000.0)]
    w = window_counts(one, 3600.0)
    assert (w.good, w.total, w.covered_s, w.complete) == (990.0, 1000.0, 0.0, False)
    report = evaluate(SLO, one)
    assert report.conditions[0].long_burn == pytest.approx(10.0)
    two = [Sample(0.0, 0.0, 0.0), Sample(600.0, 999.0, 1000.0)]
    assert window_counts(two, 300.0).covered_s == 600.0  # the 5 m window reaches back to t=0
    assert window_counts(two, 3600.0).complete is False


def test_counter_reset_counts_from_zero() -> None:
    samples = [Sample(0, 0, 0), Sample(60, 100, 100), Sample(120, 10, 20)]  # restart: 10/20
    w = window_counts(samples, 3600.0)
    assert (w.good, w.total) == (110.0, 120.0)


def test_no_samples_is_an_input_error() -> None:
    with pytest.raises(InputError, match="no metric samples"):
        window_counts([], 60.0)


def test_conditions_are_the_workbook_table() -> None:
    assert [(c.severity, c.name, c.factor) for c in WORKBOOK_CONDITIONS] == [
        ("page", "1h/5m", 14.4),
        ("page", "6h/30m", 6.0),
        ("ticket", "3d/6h", 1.0),
    ]


# ------------------------------------------------------------------ live metrics (real registry)
def _serve(metrics: object, n: int, slow: int, errors: int) -> None:
    from feedstack.monitor.metrics import ServingMetrics

    assert isinstance(metrics, ServingMetrics)
    for i in range(n):
        metrics.request_seconds.labels("feed", "http").observe(0.2 if i < slow else 0.01)
        metrics.requests.labels("feed", "http", "5xx" if i < errors else "2xx").inc()
    metrics.requests.labels("events", "http", "5xx").inc(50)  # other endpoints never count


def test_scrape_reads_feed_slis_from_the_serving_metrics() -> None:
    from prometheus_client import generate_latest

    from feedstack.core.spec import Spec
    from feedstack.monitor.metrics import ServingMetrics
    from feedstack.monitor.scrape import sli_sample

    m = ServingMetrics()
    _serve(m, 1000, slow=100, errors=3)
    got = sli_sample(generate_latest(m.registry).decode(), 5.0, Spec())
    assert got["availability"] == Sample(5.0, 997.0, 1000.0)
    assert got["latency_120ms"] == Sample(5.0, 900.0, 1000.0)


def test_scrape_history_over_time_with_injected_clock() -> None:
    from prometheus_client import generate_latest

    from feedstack.core.spec import Spec
    from feedstack.monitor.metrics import ServingMetrics
    from feedstack.monitor.scrape import scrape_history, scraped_reports

    m = ServingMetrics()
    now = [0.0]

    def sleep(s: float) -> None:  # traffic happens while the scraper waits
        now[0] += s
        _serve(m, 1000, slow=500, errors=100)

    history = scrape_history(
        lambda: generate_latest(m.registry).decode(),
        Spec(),
        samples=3,
        interval_s=60.0,
        clock=lambda: now[0],
        sleep=sleep,
    )
    assert [s.t_s for s in history["availability"]] == [0.0, 60.0, 120.0]
    avail, latency = scraped_reports(history, Spec())
    # 10 % errors against a 0.1 % budget: burn 100 on every window (all partial: 2 min of history)
    assert avail.conditions[0].long_burn == pytest.approx(100.0)
    assert avail.to_json()["firing"] == ["page 1h/5m", "page 6h/30m", "ticket 3d/6h"]
    # 50 % slow against a 5 % budget: burn 10 < 14.4 (no fast page), > 6 (slow page)
    assert latency.conditions[0].long_burn == pytest.approx(10.0)
    assert latency.to_json()["firing"] == ["page 6h/30m", "ticket 3d/6h"]


def test_scrape_without_feed_metrics_names_the_problem() -> None:
    from feedstack.core.spec import Spec
    from feedstack.monitor.scrape import sli_sample

    with pytest.raises(InputError, match="metrics on"):
        sli_sample("# nothing here\n", 0.0, Spec())


def test_prometheus_report_asks_increase_per_window() -> None:
    """Prometheus answers the promql.py queries; the report is built from them (full windows)."""
    from feedstack.core.spec import Spec
    from feedstack.monitor.scrape import prometheus_report
    from feedstack.monitor.slo import spec_slos

    asked: list[str] = []

    def query(expr: str) -> float:  # a Prometheus with 1000 requests per window, 20 of them 5xx
        asked.append(expr)
        return 20.0 if 'code="5xx"' in expr else 1000.0

    avail, _ = spec_slos(Spec().latency, Spec().monitor)
    report = prometheus_report(avail, Spec(), query)
    assert report.conditions[0].long_burn == pytest.approx(20.0)  # 2 % bad / 0.1 % budget
    assert report.conditions[0].long.complete
    assert any("[3600s]" in q for q in asked) and any("[2592000s]" in q for q in asked)
    assert report.to_json()["firing"] == ["page 1h/5m", "page 6h/30m", "ticket 3d/6h"]
