"""The report's figures, as PNG files next to report.md.

Figures are built with matplotlib's object API (``Figure``, no pyplot): no global backend or
figure registry, so the report works headless and from any thread. Each function takes plain
data, writes one file and returns its name; the caller decides whether there is anything to
plot (no data: no figure, and the section says what to run).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

DPI = 110


def _figure(width: float, height: float) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height))
    return fig, fig.subplots()


def _series(ax: Any, xs: Sequence[float], ys: Sequence[float], label: str) -> None:
    """Points joined by a line only when there are at least three: a line through two points
    (recall at K = 10 and K = 500) draws a curve nobody measured, so those stay markers."""
    style = "-" if len(xs) >= 3 else "none"
    ax.plot(xs, ys, marker="o", linestyle=style, label=label)


def _save(fig: Figure, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=DPI)
    return name


def _quantile_cdf(
    out: Path,
    name: str,
    runs: Mapping[str, Mapping[float, float]],
    scale: float,
    objective: tuple[float, str],
    labels: tuple[str, str, str],
) -> str:
    """A CDF per run from its quantiles ({quantile: value}), values multiplied by ``scale``,
    a dashed line at the objective; ``labels`` = (x label, y label, title)."""
    fig, ax = _figure(6.4, 3.6)
    for label, pct in runs.items():
        qs = sorted(pct)
        _series(ax, [pct[q] * scale for q in qs], qs, label)
    ax.axvline(objective[0], color="red", linestyle="--", label=objective[1])
    ax.set_xscale("log")
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(labels[2])
    ax.legend(fontsize=7)
    return _save(fig, out, name)


def latency_cdf(
    out: Path,
    runs: Mapping[str, Mapping[float, float]],
    slo_ms: float,
    name: str = "latency_cdf.png",
) -> str:
    """Latency CDF per run from its percentiles ({quantile: ms}: p50, p95, p99, max)."""
    return _quantile_cdf(
        out,
        name,
        runs,
        1.0,
        (slo_ms, f"p95 objective {slo_ms:g} ms"),
        ("latency (ms)", "fraction of requests", "Feed request latency"),
    )


def freshness_cdf(
    out: Path,
    lags_ms: Mapping[str, Mapping[float, float]],
    max_lag_s: float,
    name: str = "freshness_cdf.png",
) -> str:
    """CDF of event -> online-store lag per backend from its quantiles ({quantile: ms})."""
    return _quantile_cdf(
        out,
        name,
        lags_ms,
        1 / 1000.0,
        (max_lag_s, f"objective {max_lag_s:g} s"),
        ("feature lag (s)", "fraction of events", "Feature freshness"),
    )


def recall_curves(
    out: Path, series: Mapping[str, Mapping[int, float]], name: str = "recall_at_k.png"
) -> str:
    """Recall@K against K per series (model or stage); markers, joined only where a series has
    three or more K."""
    fig, ax = _figure(6.4, 3.6)
    for label, points in series.items():
        ks = sorted(points)
        _series(ax, ks, [points[k] for k in ks], label)
    ax.set_xscale("log")
    ax.set_xlabel("K")
    ax.set_ylabel("recall@K")
    ax.set_title("Recall@K")
    ax.legend(fontsize=7)
    return _save(fig, out, name)


def table_figure(
    out: Path, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], name: str
) -> str:
    """A table as a figure (the model-selection table, for the HTML and slides)."""
    fig, ax = _figure(1.1 * len(columns) + 1, 0.35 * len(rows) + 1.0)
    ax.axis("off")
    cells = [[str(c) for c in row] for row in rows]
    table = ax.table(cellText=cells, colLabels=list(columns), loc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    ax.set_title(title, fontsize=10)
    return _save(fig, out, name)


def cost_breakdown(
    out: Path, lines_usd: Mapping[str, float], budget_usd: float, name: str = "cost_breakdown.png"
) -> str:
    """Monthly cost per line, stacked into one bar, against the budget."""
    fig, ax = _figure(6.4, 3.2)
    left = 0.0
    for label, usd in sorted(lines_usd.items(), key=lambda kv: -kv[1]):
        ax.barh(["plan"], [usd], left=left, label=f"{label} ${usd:,.0f}")
        left += usd
    ax.axvline(budget_usd, color="red", linestyle="--", label=f"budget ${budget_usd:,.0f}")
    ax.set_xlabel("$ / month")
    ax.set_title("Monthly cost")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=3)
    return _save(fig, out, name)


def autoscaled_day(
    out: Path, traffic: Sequence[float], cores: Sequence[float], name: str = "autoscaled_day.png"
) -> str:
    """Hourly traffic (relative to the mean) and the autoscaled fleet over one day."""
    fig, ax = _figure(6.4, 3.2)
    hours = np.arange(len(traffic))
    ax.plot(hours, traffic, label="traffic / daily mean")
    ax.set_xlabel("hour of day")
    ax.set_ylabel("traffic / mean")
    ax2 = ax.twinx()
    ax2.step(hours, cores, where="mid", color="tab:orange", label="fleet cores")
    ax2.set_ylabel("cores")
    ax.set_title("One day against the autoscaling policy")
    fig.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.12, 0.85))
    return _save(fig, out, name)
