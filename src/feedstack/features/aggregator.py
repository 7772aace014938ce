"""The feature aggregator: one piece of code for the streaming worker and the offline backfill.

It consumes events in log order and keeps every feature's state in numpy arrays indexed by
entity. Decayed counters are stored scaled to a base time ``T0``: an event at ``t`` adds
``exp((t - T0) / tau)``; the value at any time ``s`` is ``stored * exp((T0 - s) / tau)``. Every
addition is an ``np.add.at`` in log order, so the result does not depend on how the log was cut
into batches: the stream (small batches, restarts) and the backfill (one pass) agree to the bit.

Outputs:
- ``apply(events)`` returns *snapshot rows*: at every minute of event time crossed
  (SNAPSHOT_EVERY_S), the entities changed during that minute, as of the minute boundary. These
  are the offline feature rows (point-in-time joins read them; nothing after the boundary is in).
- ``online_rows()`` returns, for the entities changed since its last call, their values as of the
  watermark (the newest event time seen): what the worker pushes to the online store.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from feedstack.features.definitions import (
    AFFINITY_TAU_S,
    ARTICLE_COUNTERS,
    ARTICLE_STATS,
    ARTICLE_TAUS,
    REBASE_EVERY_S,
    RECENT_CLICKS,
    REGION_TRENDING,
    SNAPSHOT_EVERY_S,
    TOP_TOPICS,
    TOPIC_STATS,
    TRENDING_TAU_S,
    TRENDING_TOP,
    USER_FEATURES,
    WINDOWS_S,
)
from feedstack.features.rows import FeatureRows

F64 = np.float64
ALL_REGIONS = "all"  # pseudo-region: trending over every region (the cold-start fallback)
UNKNOWN = "unknown"
_TAU_ART = np.array(ARTICLE_TAUS, dtype=F64)
_TAU_USER = np.array([WINDOWS_S["24h"], WINDOWS_S["24h"]], dtype=F64)
_TAU_TOPIC = np.array([WINDOWS_S["1h"], WINDOWS_S["1h"]], dtype=F64)
# Column offsets of (impressions, clicks) for each window in the article counter matrix.
_ART_IMP = np.arange(0, len(ARTICLE_COUNTERS), 2)
_ART_CLK = _ART_IMP + 1
_IMP_COLS = tuple(_ART_IMP.tolist())
_CLK_COLS = tuple(_ART_CLK.tolist())


def event_seconds(value: str | datetime) -> float:
    """Unix seconds of an ISO 8601 time (as stored in the log) or an aware datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.timestamp()


class _Index:
    """String ids <-> dense ints, growing."""

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self.ids: list[str] = list(ids)
        self.pos: dict[str, int] = {k: i for i, k in enumerate(self.ids)}

    def get(self, key: str) -> int:
        i = self.pos.get(key)
        if i is None:
            i = len(self.ids)
            self.pos[key] = i
            self.ids.append(key)
        return i

    def __len__(self) -> int:
        return len(self.ids)


def _lists(values: pa.Array, mask: np.ndarray[Any, Any]) -> pa.ListArray:
    """An Arrow list per row of ``mask``: row i holds the next ``mask[i].sum()`` of ``values``
    (``values`` are the masked cells in row-major order)."""
    offsets = np.zeros(mask.shape[0] + 1, dtype=np.int32)
    np.cumsum(mask.sum(axis=1), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)


def _fit(arr: np.ndarray[Any, Any], n: int, fill: float = 0) -> np.ndarray[Any, Any]:
    """``arr`` with at least n rows (capacity doubles), new rows set to ``fill``."""
    if n <= arr.shape[0]:
        return arr
    cap = max(n, 2 * arr.shape[0], 64)
    out = np.full((cap, *arr.shape[1:]), fill, dtype=arr.dtype)
    out[: arr.shape[0]] = arr
    return out


class FeatureAggregator:
    """State of every feature; see the module docstring for the contract."""

    def __init__(self) -> None:
        self.users = _Index()
        self.articles = _Index()
        self.topics = _Index()
        self.regions = _Index([UNKNOWN, ALL_REGIONS])
        self.base_s: float | None = None  # T0
        self.next_tick_s: float | None = None
        self.watermark_s: float | None = None
        self.events_seen = 0
        # Called at each snapshot tick with (tick, time of the crossing event, snapshot rows),
        # before the state moves on: the group worker saves its partition's share of the
        # global views there (partials.py). Not part of the state.
        self.on_snapshot: Callable[[float, float, list[FeatureRows]], None] | None = None
        # Render the snapshot rows at each tick. A reader of the state alone (the serving
        # process's item cache) turns it off: the flags are cleared as if they were rendered,
        # the state is the same, and rendering was a quarter of its cost per event.
        self.snapshot_rows = True
        z = np.zeros
        self.art_cnt = z((0, len(ARTICLE_COUNTERS)), F64)
        self.art_topic = z(0, np.int32)
        self.art_region = z(0, np.int32)
        self.art_publish = z(0, np.int64)
        self.user_cnt = z((0, 2), F64)
        self.user_aff = z((0, 16), np.float32)
        self.user_region = z(0, np.int32)
        self.user_recent = z((0, RECENT_CLICKS), np.int32)
        self.user_nrecent = z(0, np.int64)  # clicks ever appended (ring position)
        self.topic_cnt = z((0, 2), F64)
        self.trend = z((2, 0), F64)  # [region, article]
        self._names: pa.StringArray | None = None  # article ids as Arrow (user_rows)
        # Entities changed since the last snapshot ("snap") and since the last online_rows().
        self._dirty: dict[str, dict[str, np.ndarray[Any, Any]]] = {
            k: {v: z(0, bool) for v in ("article", "user", "topic", "region")}
            for k in ("snap", "online")
        }
        self._reset_segment()

    # ----------------------------------------------------------------- ingestion of events
    def _reset_segment(self) -> None:
        self._a_idx: list[int] = []
        self._a_col: list[int] = []
        self._a_t: list[float] = []
        self._u_idx: list[int] = []
        self._u_col: list[int] = []
        self._u_t: list[float] = []
        self._aff_u: list[int] = []
        self._aff_topic: list[int] = []
        self._aff_t: list[float] = []
        self._tp_idx: list[int] = []
        self._tp_col: list[int] = []
        self._tp_t: list[float] = []
        self._tr_region: list[int] = []
        self._tr_art: list[int] = []
        self._tr_t: list[float] = []

    def _article(self, key: str) -> int:
        i = self.articles.get(key)
        if i >= self.art_cnt.shape[0]:
            self.art_cnt = _fit(self.art_cnt, i + 1)
            self.art_topic = _fit(self.art_topic, i + 1, -1)
            self.art_region = _fit(self.art_region, i + 1, -1)
            self.art_publish = _fit(self.art_publish, i + 1)
        if i >= self.trend.shape[1]:
            self.trend = np.ascontiguousarray(_fit(self.trend.T, i + 1).T)
        return i

    def _user(self, key: str) -> int:
        i = self.users.get(key)
        if i >= self.user_cnt.shape[0]:
            self.user_cnt = _fit(self.user_cnt, i + 1)
            self.user_aff = _fit(self.user_aff, i + 1)
            self.user_region = _fit(self.user_region, i + 1, 0)
            self.user_recent = _fit(self.user_recent, i + 1, -1)
            self.user_nrecent = _fit(self.user_nrecent, i + 1)
        return i

    def _topic(self, key: str) -> int:
        i = self.topics.get(key)
        if i >= self.topic_cnt.shape[0]:
            self.topic_cnt = _fit(self.topic_cnt, i + 1)
        if i >= self.user_aff.shape[1]:
            grown = np.zeros((self.user_aff.shape[0], 2 * self.user_aff.shape[1]), np.float32)
            grown[:, : self.user_aff.shape[1]] = self.user_aff
            self.user_aff = grown
        return i

    def _region(self, key: str) -> int:
        i = self.regions.get(key)
        if i >= self.trend.shape[0]:
            self.trend = _fit(self.trend, i + 1)
        return i

    def apply(self, events: Iterable[Mapping[str, Any]]) -> list[FeatureRows]:
        """Apply events (log order; mappings as stored in the log) and return snapshot rows."""
        snapshots: list[FeatureRows] = []
        for ev in events:
            t = event_seconds(ev["event_time"])
            if self.next_tick_s is None:
                self._start(t)
            elif t >= self.next_tick_s:
                self._apply_segment()
                rows = self._snapshot(self.next_tick_s) if self.snapshot_rows else self._unsnap()
                if self.on_snapshot is not None:
                    self.on_snapshot(self.next_tick_s, t, rows)
                snapshots.extend(rows)
                self._advance(t)
            self._extract(ev, t)
        self._apply_segment()
        return snapshots

    def _start(self, t: float) -> None:
        self.base_s = math.floor(t / REBASE_EVERY_S) * REBASE_EVERY_S
        self.next_tick_s = math.floor(t / SNAPSHOT_EVERY_S) * SNAPSHOT_EVERY_S + SNAPSHOT_EVERY_S

    def _advance(self, t: float) -> None:
        self.next_tick_s = math.floor(t / SNAPSHOT_EVERY_S) * SNAPSHOT_EVERY_S + SNAPSHOT_EVERY_S
        base = math.floor(t / REBASE_EVERY_S) * REBASE_EVERY_S
        assert self.base_s is not None
        if base > self.base_s:
            shift = self.base_s - base  # negative: scale every stored counter down to the new T0
            self.art_cnt *= np.exp(shift / _TAU_ART)
            self.user_cnt *= np.exp(shift / _TAU_USER)
            self.topic_cnt *= np.exp(shift / _TAU_TOPIC)
            self.user_aff *= np.float32(math.exp(shift / AFFINITY_TAU_S))
            self.trend *= math.exp(shift / TRENDING_TAU_S)
            self.base_s = base

    def _extract(self, ev: Mapping[str, Any], t: float) -> None:
        """Sequential part: ids to indices, attributes, the recent-clicks ring; counters are
        queued and added vectorized in ``_apply_segment``."""
        self.events_seen += 1
        if self.watermark_s is None or t > self.watermark_s:
            self.watermark_s = t
        kind = ev["type"]
        if kind == "impression":
            u = self._user(ev["user_id"])
            for item in ev["item_ids"]:
                a = self._article(item)
                self._a_idx.extend((a, a, a))
                self._a_col.extend(_IMP_COLS)
                self._a_t.extend((t, t, t))
                topic = int(self.art_topic[a])
                if topic >= 0:
                    self._tp_idx.append(topic)
                    self._tp_col.append(0)
                    self._tp_t.append(t)
            self._u_idx.append(u)
            self._u_col.append(0)
            self._u_t.append(t)
        elif kind == "click":
            u = self._user(ev["user_id"])
            a = self._article(ev["article_id"])
            self._a_idx.extend((a, a, a))
            self._a_col.extend(_CLK_COLS)
            self._a_t.extend((t, t, t))
            self._u_idx.append(u)
            self._u_col.append(1)
            self._u_t.append(t)
            topic = int(self.art_topic[a])
            if topic >= 0:
                self._aff_u.append(u)
                self._aff_topic.append(topic)
                self._aff_t.append(t)
                self._tp_idx.append(topic)
                self._tp_col.append(1)
                self._tp_t.append(t)
            for r in (int(self.user_region[u]), 1):  # the user's region and "all"
                self._tr_region.append(r)
                self._tr_art.append(a)
                self._tr_t.append(t)
            n = int(self.user_nrecent[u])
            self.user_recent[u, n % RECENT_CLICKS] = a
            self.user_nrecent[u] = n + 1
        elif kind == "article_published":
            a = self._article(ev["article_id"])
            self.art_topic[a] = self._topic(ev["topic"])
            self.art_region[a] = self._region(ev["region"])
            self.art_publish[a] = int(event_seconds(ev["publish_time"]))
            self._mark("article", [a])
        elif kind == "user_profile":
            u = self._user(ev["user_id"])
            self.user_region[u] = self._region(ev["region"])
            self._mark("user", [u])
        # dwell and hide carry no feature in this version (the ranker reads them as labels).

    def _weights(self, times: list[float], taus: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        assert self.base_s is not None
        return np.exp((np.asarray(times, F64) - self.base_s) / taus)  # type: ignore[no-any-return]

    def _apply_segment(self) -> None:
        if self._a_idx:
            idx, col = np.asarray(self._a_idx), np.asarray(self._a_col)
            np.add.at(self.art_cnt, (idx, col), self._weights(self._a_t, _TAU_ART[col]))
            self._mark("article", idx)
        if self._u_idx:
            idx, col = np.asarray(self._u_idx), np.asarray(self._u_col)
            np.add.at(self.user_cnt, (idx, col), self._weights(self._u_t, _TAU_USER[col]))
            self._mark("user", idx)
        if self._aff_u:
            idx = np.asarray(self._aff_u)
            w = self._weights(self._aff_t, np.full(len(idx), AFFINITY_TAU_S)).astype(np.float32)
            np.add.at(self.user_aff, (idx, np.asarray(self._aff_topic)), w)
            self._mark("user", idx)
        if self._tp_idx:
            idx, col = np.asarray(self._tp_idx), np.asarray(self._tp_col)
            np.add.at(self.topic_cnt, (idx, col), self._weights(self._tp_t, _TAU_TOPIC[col]))
            self._mark("topic", idx)
        if self._tr_art:
            reg, art = np.asarray(self._tr_region), np.asarray(self._tr_art)
            w = self._weights(self._tr_t, np.full(len(art), TRENDING_TAU_S))
            np.add.at(self.trend, (reg, art), w)
            self._mark("region", reg)
        self._reset_segment()

    def _mark(self, entity: str, idx: Sequence[int] | np.ndarray[Any, Any]) -> None:
        sizes = {
            "article": len(self.articles),
            "user": len(self.users),
            "topic": len(self.topics),
            "region": len(self.regions),
        }
        for flags in self._dirty.values():
            flags[entity] = _fit(flags[entity], sizes[entity], False)
            flags[entity][np.asarray(idx, dtype=np.int64)] = True

    # ------------------------------------------------------------------------ reading state
    def _take_dirty(self, which: str, entity: str) -> np.ndarray[Any, Any]:
        flags = self._dirty[which][entity]
        idx = np.flatnonzero(flags)
        flags[idx] = False
        return idx

    def discard_online(self) -> dict[str, np.ndarray[Any, Any]]:
        """Clear the "changed since online_rows()" flags without rendering rows; returns the
        entity indices that were set (a snapshot tick's rows already cover them)."""
        return {e: self._take_dirty("online", e) for e in ("article", "user", "topic", "region")}

    def changed_since_snapshot(self, entity: str) -> np.ndarray[Any, Any]:
        """Indices of ``entity`` changed since the last snapshot tick (flags left as they are)."""
        return np.flatnonzero(self._dirty["snap"][entity])

    def _snapshot(self, at_s: float) -> list[FeatureRows]:
        return self._rows("snap", at_s)

    def _unsnap(self) -> list[FeatureRows]:
        for entity in ("article", "user", "topic", "region"):
            self._take_dirty("snap", entity)
        return []

    def online_rows(self) -> list[FeatureRows]:
        """Rows of every entity changed since the last call, as of the watermark."""
        if self.watermark_s is None:
            return []
        return self._rows("online", self.watermark_s)

    def _rows(self, which: str, at_s: float) -> list[FeatureRows]:
        out = []
        for entity, build in (
            ("article", self.article_rows),
            ("user", self.user_rows),
            ("topic", self.topic_rows),
            ("region", self.region_rows),
        ):
            idx = self._take_dirty(which, entity)
            if len(idx):
                out.append(build(idx, at_s))
        return out

    def _decayed(
        self, stored: np.ndarray[Any, Any], taus: np.ndarray[Any, Any] | float, at_s: float
    ) -> np.ndarray[Any, Any]:
        assert self.base_s is not None
        return stored * np.exp((self.base_s - at_s) / taus)

    def article_rows(self, idx: np.ndarray[Any, Any], at_s: float) -> FeatureRows:
        counts = self._decayed(self.art_cnt[idx], _TAU_ART, at_s).astype(np.float32)
        cols: dict[str, Any] = {name: counts[:, j] for j, name in enumerate(ARTICLE_COUNTERS)}
        topics, regions = self.topics.ids, self.regions.ids
        cols["topic"] = [topics[t] if t >= 0 else UNKNOWN for t in self.art_topic[idx].tolist()]
        cols["region"] = [regions[r] if r >= 0 else UNKNOWN for r in self.art_region[idx].tolist()]
        cols["publish_time_s"] = self.art_publish[idx].copy()
        keys = [self.articles.ids[i] for i in idx.tolist()]
        return FeatureRows(ARTICLE_STATS.name, keys, np.full(len(idx), at_s), cols)

    def user_rows(self, idx: np.ndarray[Any, Any], at_s: float) -> FeatureRows:
        counts = self._decayed(self.user_cnt[idx], _TAU_USER, at_s).astype(np.float32)
        n_topics = len(self.topics)
        aff = self._decayed(self.user_aff[idx, :n_topics].astype(F64), AFFINITY_TAU_S, at_s)
        k = min(TOP_TOPICS, n_topics)
        # List features are built as Arrow list arrays from numpy (offsets + flat values), not
        # as Python lists: a minute tick renders every user changed in the minute (10^5 at
        # 5,000 events/s), and 3.6M Python strings and floats per tick stalled the worker ~1 s.
        # Stable order: by score descending, ties by topic index (argsort of -score is stable).
        order = np.argsort(-aff, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(aff, order, axis=1)
        # Scores are sorted descending, so the positive ones are a prefix of each row.
        keep = top > 0
        topic_names = pa.array(self.topics.ids, pa.string())
        top_topics = _lists(topic_names.take(order[keep]), keep)
        top_scores = _lists(pa.array(top[keep].astype(np.float32), pa.float32()), keep)
        # Recent clicks, newest first: ring slot (n - 1 - j) mod R for the j-th newest.
        n_clicks = self.user_nrecent[idx]
        slots = (n_clicks[:, None] - 1 - np.arange(RECENT_CLICKS)) % RECENT_CLICKS
        ring = np.take_along_axis(self.user_recent[idx], slots, axis=1)
        filled = np.arange(RECENT_CLICKS) < np.minimum(n_clicks, RECENT_CLICKS)[:, None]
        recent = _lists(self._article_names().take(ring[filled]), filled)
        regions = self.regions.ids
        cols: dict[str, Any] = {
            "region": [regions[r] for r in self.user_region[idx].tolist()],
            "affinity_topics": top_topics,
            "affinity_scores": top_scores,
            "recent_clicks": recent,
            "impressions_24h": counts[:, 0],
            "clicks_24h": counts[:, 1],
        }
        keys = [self.users.ids[i] for i in idx.tolist()]
        return FeatureRows(USER_FEATURES.name, keys, np.full(len(idx), at_s), cols)

    def _article_names(self) -> pa.StringArray:
        """The article ids as an Arrow array (cached until an article is added)."""
        if self._names is None or len(self._names) != len(self.articles):
            self._names = pa.array(self.articles.ids, pa.string())
        return self._names

    def topic_rows(self, idx: np.ndarray[Any, Any], at_s: float) -> FeatureRows:
        counts = self._decayed(self.topic_cnt[idx], _TAU_TOPIC, at_s).astype(np.float32)
        cols = {"impressions_1h": counts[:, 0], "clicks_1h": counts[:, 1]}
        keys = [self.topics.ids[i] for i in idx.tolist()]
        return FeatureRows(TOPIC_STATS.name, keys, np.full(len(idx), at_s), cols)

    def region_rows(self, idx: np.ndarray[Any, Any], at_s: float) -> FeatureRows:
        items, scores = [], []
        n_art = len(self.articles)
        for r in idx.tolist():
            row = self._decayed(self.trend[r, :n_art], TRENDING_TAU_S, at_s)
            k = min(TRENDING_TOP, int(np.count_nonzero(row)))
            top = np.argsort(-row, kind="stable")[:k]
            items.append([self.articles.ids[a] for a in top.tolist()])
            scores.append(row[top].astype(np.float32).tolist())
        keys = [self.regions.ids[i] for i in idx.tolist()]
        cols = {"trending_items": items, "trending_scores": scores}
        return FeatureRows(REGION_TRENDING.name, keys, np.full(len(idx), at_s), cols)

    def all_rows(self, at_s: float | None = None) -> list[FeatureRows]:
        """Every entity's row as of ``at_s`` (default: the watermark)."""
        at = self.watermark_s if at_s is None else at_s
        if at is None:
            return []
        return [
            self.article_rows(np.arange(len(self.articles)), at),
            self.user_rows(np.arange(len(self.users)), at),
            self.topic_rows(np.arange(len(self.topics)), at),
            self.region_rows(np.arange(len(self.regions)), at),
        ]
