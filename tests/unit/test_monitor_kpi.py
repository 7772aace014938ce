"""KPIs from logged events (Parquet of the event schema, read with DuckDB): known answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from feedstack.core.events import Click, Dwell, Event, Impression
from feedstack.monitor.kpi import kpi_report, ratio_ci, wilson
from feedstack.storage.arrow_events import events_to_table

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def test_wilson_known_answer() -> None:
    lo, hi = wilson(4, 20)  # textbook: 4 of 20 -> (0.0807, 0.4160)
    assert (round(lo, 4), round(hi, 4)) == (0.0807, 0.4160)
    assert wilson(0, 0) == (0.0, 1.0)
    assert wilson(0, 50)[0] == pytest.approx(0.0, abs=1e-12)


def test_delta_method_widens_with_clustered_clicks() -> None:
    shown = np.full(100, 10.0)
    spread = np.tile([1.0, 1.0], 50)  # every list gets one click
    clustered = np.tile([2.0, 0.0], 50)  # same CTR, clicks bunched in half the lists
    r1, lo1, hi1 = ratio_ci(spread, shown)
    r2, lo2, hi2 = ratio_ci(clustered, shown)
    assert r1 == r2 == pytest.approx(0.1)
    assert hi1 - lo1 == pytest.approx(0.0)  # no between-request variance
    assert hi2 - lo2 > 0.0


def _log(tmp_path: Path) -> str:
    events: list[Event] = []
    n = 0

    def at(minutes: int) -> datetime:
        return T0 + timedelta(minutes=minutes)

    # v1: two lists of 10 with 1 and 3 clicks; v2: one list of 5 with 0 clicks, one with 2.
    plan = [("v1", 10, 1), ("v1", 10, 3), ("v2", 5, 0), ("v2", 5, 2)]
    for r, (version, k, c) in enumerate(plan):
        items = [f"a{i}" for i in range(k)]
        events.append(
            Impression(
                event_id=f"i{r}",
                event_time=at(r),
                request_id=f"r{r}",
                user_id=f"u{r}",
                item_ids=items,
                model_version=version,
            )
        )
        for j in range(c):
            n += 1
            events.append(
                Click(
                    event_id=f"c{n}",
                    event_time=at(r),
                    user_id=f"u{r}",
                    article_id=items[j],
                    request_id=f"r{r}",
                    position=j,
                )
            )
            events.append(
                Dwell(
                    event_id=f"d{n}",
                    event_time=at(r),
                    user_id=f"u{r}",
                    article_id=items[j],
                    dwell_ms=1000 * (j + 1),
                    request_id=f"r{r}",
                )
            )
    # A click without a request id cannot be attributed: ignored.
    events.append(Click(event_id="cx", event_time=at(1), user_id="u9", article_id="a1"))
    folder = tmp_path / "events" / "date=2026-03-01"
    folder.mkdir(parents=True)
    pq.write_table(events_to_table(events), folder / "part-00000001.parquet")
    return str(tmp_path / "events" / "*" / "*.parquet")


def test_ctr_and_dwell_per_version_and_arm(tmp_path: Path) -> None:
    glob = _log(tmp_path)
    report = kpi_report(glob, arms={"v1": "champion", "v2": "challenger"})
    v1, v2 = report.by_model_version
    assert (v1.group, v1.requests, v1.items_shown, v1.clicks) == ("v1", 2, 20, 4)
    assert v1.ctr == pytest.approx(0.2)
    assert v1.ctr_wilson95 == pytest.approx(wilson(4, 20))
    assert v1.ctr_ci95[0] < 0.2 < v1.ctr_ci95[1]
    # v1 dwells: 1 s (list 0), 1 s, 2 s, 3 s (list 1)
    assert v1.dwell_n == 4 and v1.dwell_mean_ms == pytest.approx(1750.0)
    assert v1.dwell_median_ms == pytest.approx(1500.0)
    assert (v2.items_shown, v2.clicks, v2.ctr) == (10, 2, pytest.approx(0.2))
    arms = {r.group: r for r in report.by_arm}
    assert set(arms) == {"champion", "challenger"}
    assert arms["champion"].clicks == 4 and arms["challenger"].clicks == 2
    assert report.to_json()["by_arm"][0]["group"] == "challenger"


def test_time_bounds_and_unmapped_arms(tmp_path: Path) -> None:
    glob = _log(tmp_path)
    late = kpi_report(glob, start_s=(T0 + timedelta(minutes=2)).timestamp())
    assert [r.group for r in late.by_model_version] == ["v2"]
    assert [r.group for r in late.by_arm] == ["v2"]  # no mapping: the version is its own arm


def test_unreadable_source_is_an_input_error(tmp_path: Path) -> None:
    from feedstack.core.errors import InputError

    with pytest.raises(InputError, match="cannot read events"):
        kpi_report(str(tmp_path / "nothing" / "*.parquet"))
