"""Business KPIs from the logged events: CTR and dwell per model version and per experiment arm.

Read with DuckDB from the offline Parquet copy of the log (or any Parquet of the event schema):
each impression (a served list: request id, model version, items) is joined to the clicks and
dwells that name its request id, so a click counts for the model that served the list.

- CTR = clicks / items shown. Items of one list are not independent draws (one user, one
  moment), so the confidence interval treats the *request* as the unit: CTR is a ratio of
  per-request sums and its variance comes from the delta method (Deng, Knoblich & Lu, "Applying
  the Delta Method in Metric Analytics", KDD 2018, eq. 3):
      Var(sum c / sum m) ~= Var(c_i - R m_i) / (n * mean(m)^2)
  The Wilson score interval (Wilson 1927) over items is given too: the interval if items were
  independent, narrower when clicks cluster by request.
- dwell: mean dwell of clicked items (ms) with a normal interval, and the median.
- per arm: model versions are grouped by an arm mapping (``arms``: version -> arm, e.g. from the
  registry's rollout state: champion, challenger); unmapped versions are their own arm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from feedstack.core.errors import InputError

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def wilson(successes: float, trials: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson, JASA 1927)."""
    if trials <= 0:
        return (0.0, 1.0)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def ratio_ci(
    clicks: npt.NDArray[np.float64], shown: npt.NDArray[np.float64], z: float = Z95
) -> tuple[float, float, float]:
    """(ratio, low, high) of sum(clicks) / sum(shown) over requests, delta-method interval."""
    n = clicks.shape[0]
    total = float(shown.sum())
    if n == 0 or total == 0:
        return (0.0, 0.0, 0.0)
    r = float(clicks.sum()) / total
    if n < 2:
        return (r, 0.0, 1.0)
    resid = clicks - r * shown
    se = math.sqrt(float(resid.var(ddof=1)) / n) / float(shown.mean())
    return (r, max(0.0, r - z * se), r + z * se)


@dataclass(frozen=True)
class KpiRow:
    group: str  # model version or arm
    requests: int
    items_shown: int
    clicks: int
    ctr: float
    ctr_ci95: tuple[float, float]  # delta method, request as the unit
    ctr_wilson95: tuple[float, float]  # items as independent trials
    dwell_n: int
    dwell_mean_ms: float | None
    dwell_ci95_ms: tuple[float, float] | None
    dwell_median_ms: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _row(
    group: str,
    shown: npt.NDArray[np.float64],
    clicks: npt.NDArray[np.float64],
    dwell: npt.NDArray[np.float64],
) -> KpiRow:
    ctr, lo, hi = ratio_ci(clicks, shown)
    n_clicks, n_shown = float(clicks.sum()), float(shown.sum())
    if dwell.size:
        mean = float(dwell.mean())
        se = float(dwell.std(ddof=1)) / math.sqrt(dwell.size) if dwell.size > 1 else math.inf
        dwell_ci = (mean - Z95 * se, mean + Z95 * se) if math.isfinite(se) else None
        median: float | None = float(np.median(dwell))
    else:
        mean, dwell_ci, median = math.nan, None, None
    return KpiRow(
        group,
        int(shown.shape[0]),
        int(n_shown),
        int(n_clicks),
        ctr,
        (lo, hi),
        wilson(n_clicks, n_shown),
        int(dwell.size),
        None if not dwell.size else mean,
        dwell_ci,
        median,
    )


@dataclass(frozen=True)
class KpiReport:
    by_model_version: tuple[KpiRow, ...]
    by_arm: tuple[KpiRow, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "by_model_version": [r.to_json() for r in self.by_model_version],
            "by_arm": [r.to_json() for r in self.by_arm],
        }


_QUERY = """
WITH ev AS (SELECT * FROM read_parquet({source}, hive_partitioning = true, union_by_name = true)
            {where}),
imp AS (SELECT request_id, any_value(model_version) AS model_version,
               max(len(item_ids)) AS shown
        FROM ev WHERE type = 'impression' GROUP BY request_id),
clk AS (SELECT request_id, count(DISTINCT article_id) AS clicks
        FROM ev WHERE type = 'click' AND request_id IS NOT NULL GROUP BY request_id)
SELECT imp.model_version, imp.shown, coalesce(clk.clicks, 0) AS clicks
FROM imp LEFT JOIN clk USING (request_id)
"""
_DWELL = """
WITH ev AS (SELECT * FROM read_parquet({source}, hive_partitioning = true, union_by_name = true)
            {where}),
imp AS (SELECT request_id, any_value(model_version) AS model_version
        FROM ev WHERE type = 'impression' GROUP BY request_id)
SELECT imp.model_version, d.dwell_ms
FROM ev AS d JOIN imp USING (request_id)
WHERE d.type = 'dwell' AND d.dwell_ms IS NOT NULL
"""


def kpi_report(
    parquet_glob: str,
    *,
    arms: Mapping[str, str] | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
) -> KpiReport:
    """KPIs over the impressions in [start_s, end_s) (Unix seconds; None = unbounded)."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    where = []
    if start_s is not None:
        where.append(f"epoch_us(event_time) >= {int(start_s * 1e6)}")
    if end_s is not None:
        where.append(f"epoch_us(event_time) < {int(end_s * 1e6)}")
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    source = "'" + parquet_glob.replace("'", "''") + "'"
    try:
        req = con.execute(_QUERY.format(source=source, where=clause)).fetchnumpy()
        dw = con.execute(_DWELL.format(source=source, where=clause)).fetchnumpy()
    except duckdb.IOException as exc:
        raise InputError(f"cannot read events from {parquet_glob}: {exc}") from None
    finally:
        con.close()
    versions = np.asarray(req["model_version"]).astype(str)
    shown = np.asarray(req["shown"], dtype=np.float64)
    clicks = np.asarray(req["clicks"], dtype=np.float64)
    dwell_versions = np.asarray(dw["model_version"]).astype(str)
    dwell = np.asarray(dw["dwell_ms"], dtype=np.float64)
    arms = arms or {}

    def rows(keys: npt.NDArray[np.str_], dwell_keys: npt.NDArray[np.str_]) -> tuple[KpiRow, ...]:
        return tuple(
            _row(g, shown[keys == g], clicks[keys == g], dwell[dwell_keys == g])
            for g in sorted(set(keys.tolist()))
        )

    def arm_of(v: npt.NDArray[np.str_]) -> npt.NDArray[np.str_]:
        return np.array([arms.get(x, x) for x in v.tolist()], dtype=str)

    return KpiReport(rows(versions, dwell_versions), rows(arm_of(versions), arm_of(dwell_versions)))
