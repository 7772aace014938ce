"""SLOs, error budgets and multi-window, multi-burn-rate alerts, from good/total counters. Pure.

Source: *The Site Reliability Workbook* (Beyer et al., O'Reilly 2018), ch. 5 "Alerting on SLOs",
table 5-8 (recommended parameters for a 30-day SLO):

    severity  long window  short window  burn rate  budget consumed when it fires
    page      1 h          5 m           14.4       2 %
    page      6 h          30 m          6          5 %
    ticket    3 d          6 h           1          10 %

The burn rate of a window is (bad / total) / (1 - objective): 1 spends the budget exactly over
the SLO period. A condition fires when *both* its windows burn faster than its factor: the long
window makes it significant, the short one makes it stop soon after the problem ends.

Two SLOs come from the spec: availability (``latency.availability`` of feed requests are not a
server error) and latency (95 % of feed requests within ``latency.p95_ms``, which is what a p95
objective means).

Counters arrive as cumulative samples ``(t_s, good, total)`` (a Prometheus counter scraped over
time). A window's counts are the increase from the newest sample at or before its start to the
newest sample. **Short history**: when the samples do not reach back a whole window, the window is
computed over the history there is and reported with ``complete: false`` and its ``covered_s``;
its condition is still evaluated (like Prometheus's ``rate`` over a partly filled range), so an
outage right after a deploy still pages. The budget is reported for the observed history:
``remaining = 1 - bad / ((1 - objective) * total)`` (the share of the errors allowed for the
requests served so far that are still unspent; negative when overspent).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from feedstack.core.errors import InputError
from feedstack.core.spec import Latency, Monitor

Severity = Literal["page", "ticket"]
P95_OBJECTIVE = 0.95  # "p95 <= X ms" means 95 % of requests within X ms


@dataclass(frozen=True)
class BurnCondition:
    severity: Severity
    long_s: float
    short_s: float
    factor: float

    @property
    def name(self) -> str:
        return f"{duration_label(self.long_s)}/{duration_label(self.short_s)}"


WORKBOOK_CONDITIONS = (
    BurnCondition("page", 3_600.0, 300.0, 14.4),
    BurnCondition("page", 21_600.0, 1_800.0, 6.0),
    BurnCondition("ticket", 259_200.0, 21_600.0, 1.0),
)


@dataclass(frozen=True)
class Slo:
    name: str
    objective: float  # e.g. 0.999 of events good
    period_s: float

    @property
    def budget(self) -> float:
        return 1.0 - self.objective


@dataclass(frozen=True)
class Sample:
    """Cumulative counters at a time: good events and all events since some fixed origin."""

    t_s: float
    good: float
    total: float


@dataclass(frozen=True)
class WindowCounts:
    window_s: float
    good: float
    total: float
    covered_s: float

    @property
    def bad(self) -> float:
        return self.total - self.good

    @property
    def complete(self) -> bool:
        return self.covered_s >= self.window_s

    def burn_rate(self, slo: Slo) -> float:
        if self.total <= 0:
            return 0.0
        return (self.bad / self.total) / slo.budget


def window_counts(samples: Sequence[Sample], window_s: float) -> WindowCounts:
    """Increase over the trailing window ending at the newest sample (see "short history").

    Counter resets (a restart: a sample lower than the previous one) count from zero again, as
    Prometheus's ``increase`` does.
    """
    if not samples:
        raise InputError("no metric samples: nothing to evaluate")
    end = samples[-1].t_s
    start = end - window_s
    first = 0
    for i, s in enumerate(samples):
        if s.t_s <= start:
            first = i
    good = total = 0.0
    for prev, cur in zip(samples[first:], samples[first + 1 :], strict=False):
        good += cur.good - prev.good if cur.good >= prev.good else cur.good
        total += cur.total - prev.total if cur.total >= prev.total else cur.total
    if len(samples) == 1:
        # One scrape: counts since the counters' origin (the server's start), age unknown.
        only = samples[0]
        return WindowCounts(window_s, only.good, only.total, 0.0)
    return WindowCounts(window_s, good, total, end - samples[first].t_s)


@dataclass(frozen=True)
class ConditionResult:
    condition: BurnCondition
    long: WindowCounts
    short: WindowCounts
    long_burn: float
    short_burn: float

    @property
    def firing(self) -> bool:
        c = self.condition
        return self.long_burn > c.factor and self.short_burn > c.factor

    def to_json(self) -> dict[str, Any]:
        c = self.condition
        return {
            "severity": c.severity,
            "windows": c.name,
            "factor": c.factor,
            "long_burn_rate": round(self.long_burn, 4),
            "short_burn_rate": round(self.short_burn, 4),
            "firing": self.firing,
            "complete": self.long.complete and self.short.complete,
            "long_covered_s": round(self.long.covered_s, 1),
        }


@dataclass(frozen=True)
class SloReport:
    slo: Slo
    conditions: tuple[ConditionResult, ...]
    history: WindowCounts

    @property
    def budget_remaining(self) -> float | None:
        allowed = self.slo.budget * self.history.total
        return None if allowed <= 0 else 1.0 - self.history.bad / allowed

    @property
    def firing(self) -> tuple[ConditionResult, ...]:
        return tuple(c for c in self.conditions if c.firing)

    def to_json(self) -> dict[str, Any]:
        h = self.history
        remaining = self.budget_remaining
        return {
            "slo": self.slo.name,
            "objective": self.slo.objective,
            "period_days": self.slo.period_s / 86_400.0,
            "observed": {
                "covered_s": round(h.covered_s, 1),
                "total": h.total,
                "bad": h.bad,
                "bad_ratio": (h.bad / h.total) if h.total else None,
            },
            "budget_remaining": None if remaining is None else round(remaining, 6),
            "burn_rates": {
                duration_label(w): round(counts.burn_rate(self.slo), 4)
                for w, counts in self._windows().items()
            },
            "conditions": [c.to_json() for c in self.conditions],
            "firing": [f"{c.condition.severity} {c.condition.name}" for c in self.firing],
        }

    def _windows(self) -> dict[float, WindowCounts]:
        out: dict[float, WindowCounts] = {}
        for c in self.conditions:
            out[c.short.window_s] = c.short
            out[c.long.window_s] = c.long
        return dict(sorted(out.items()))


def evaluate(
    slo: Slo,
    samples: Sequence[Sample],
    conditions: Sequence[BurnCondition] = WORKBOOK_CONDITIONS,
) -> SloReport:
    """Every condition over cumulative samples (a scraped history)."""
    if not samples:
        raise InputError("no metric samples: nothing to evaluate")
    history = window_counts(samples, min(slo.period_s, samples[-1].t_s - samples[0].t_s))
    return evaluate_windows(slo, lambda w: window_counts(samples, w), history, conditions)


def evaluate_windows(
    slo: Slo,
    counts: Callable[[float], WindowCounts],
    history: WindowCounts,
    conditions: Sequence[BurnCondition] = WORKBOOK_CONDITIONS,
) -> SloReport:
    """Every condition from per-window counts (e.g. ``increase`` queries to Prometheus)."""
    results = []
    for c in conditions:
        long, short = counts(c.long_s), counts(c.short_s)
        results.append(ConditionResult(c, long, short, long.burn_rate(slo), short.burn_rate(slo)))
    return SloReport(slo, tuple(results), history)


def spec_slos(latency: Latency, monitor: Monitor) -> tuple[Slo, Slo]:
    """The spec's two SLOs: availability, and latency (95 % within ``p95_ms``)."""
    period_s = monitor.slo_period_days * 86_400.0
    return (
        Slo("availability", latency.availability, period_s),
        Slo(f"latency_{latency.p95_ms:g}ms", P95_OBJECTIVE, period_s),
    )


def duration_label(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
