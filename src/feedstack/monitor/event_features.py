"""The monitored event features of a project's log, for ``feedstack monitor drift``: the same
three the drift scenario watches (scenario.py), read with DuckDB from the offline Parquet copy.

- ``click_topic``: the topic of each clicked article (categorical; the article's publish event
  gives the topic, "unknown" when the log never announced it),
- ``click_position``: the position of each click in its list (numeric),
- ``dwell_ms``: each dwell time (numeric).

Each value carries its event time, so any window (reference, live) is a slice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from feedstack.core.errors import InputError

KINDS = {"click_topic": "categorical", "click_position": "numeric", "dwell_ms": "numeric"}

_CLICKS = """
WITH ev AS (SELECT * FROM read_parquet({src}, hive_partitioning = true, union_by_name = true)),
art AS (SELECT article_id, any_value(topic) AS topic FROM ev
        WHERE type = 'article_published' GROUP BY article_id)
SELECT epoch_us(c.event_time) AS t_us, coalesce(a.topic, 'unknown') AS topic,
       coalesce(c.position, -1) AS position
FROM ev AS c LEFT JOIN art AS a USING (article_id)
WHERE c.type = 'click' ORDER BY t_us
"""
_DWELLS = """
SELECT epoch_us(event_time) AS t_us, dwell_ms
FROM read_parquet({src}, hive_partitioning = true, union_by_name = true)
WHERE type = 'dwell' AND dwell_ms IS NOT NULL ORDER BY t_us
"""


@dataclass(frozen=True)
class EventFeatures:
    click_t_us: npt.NDArray[np.int64]
    click_topic: npt.NDArray[np.str_]
    click_position: npt.NDArray[np.float64]
    dwell_t_us: npt.NDArray[np.int64]
    dwell_ms: npt.NDArray[np.float64]

    @property
    def newest_us(self) -> int:
        ends = [a[-1] for a in (self.click_t_us, self.dwell_t_us) if a.size]
        if not ends:
            raise InputError("the log has no clicks or dwells: nothing to compare")
        return int(max(ends))

    def window(self, start_us: int, end_us: int) -> dict[str, npt.NDArray[Any]]:
        """Values with start_us <= event time < end_us."""
        c = (self.click_t_us >= start_us) & (self.click_t_us < end_us)
        d = (self.dwell_t_us >= start_us) & (self.dwell_t_us < end_us)
        pos = self.click_position[c]
        return {
            "click_topic": self.click_topic[c],
            "click_position": pos[pos >= 0],
            "dwell_ms": self.dwell_ms[d],
        }


def read_event_features(parquet_glob: str) -> EventFeatures:
    import duckdb

    src = "'" + parquet_glob.replace("'", "''") + "'"
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    try:
        clicks = con.execute(_CLICKS.format(src=src)).fetchnumpy()
        dwells = con.execute(_DWELLS.format(src=src)).fetchnumpy()
    except duckdb.IOException as exc:
        raise InputError(f"cannot read events from {parquet_glob}: {exc}") from None
    finally:
        con.close()
    return EventFeatures(
        np.asarray(clicks["t_us"], dtype=np.int64),
        np.asarray(clicks["topic"]).astype(str),
        np.asarray(clicks["position"], dtype=np.float64),
        np.asarray(dwells["t_us"], dtype=np.int64),
        np.asarray(dwells["dwell_ms"], dtype=np.float64),
    )
