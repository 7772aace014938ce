"""Cutting the feature stream at snapshot ticks: the emission that makes online values exact.

Deterministic online values. ``online_rows()`` renders the changed entities as of the batch's
watermark, so *which* as-of time a row carries depends on where batches were cut. To make the
values the online store ends with a function of the log alone, the worker cuts each batch just
before every event that crosses a snapshot tick and drops the online flags there: every entity
changed before the tick is in the snapshot rows of that tick, which are written online too and,
being as of the tick, supersede any row written earlier in the minute. So an entity's final online
row is its snapshot row of the last minute in which it changed, or, for the minute still open,
``open_segment_rows`` as of the watermark (written by ``finish()`` at the end of a bounded run).
Any batching, any crash and restart, and the backfill give the same rows, to the bit
(tests/unit/test_worker.py). Between those points the online store holds provisional rows as of the
last batch: the freshest values, brought to request time by ``definitions.decay``.

At a tick the snapshot covers every entity changed in the minute (10^5 users at 5,000 events/s).
Only the few changed since the last batch (the flags dropped at the cut) carry news; for the rest
the snapshot row only moves the as-of time of a row already online. Those "upgrade" rows are
written a slice per batch (``upgrade_rows_per_batch``) instead of in one burst that would hold up
the events behind it, and all of them before any checkpoint, so a checkpoint never covers a tick
whose rows are not all online. ``tick_only_views`` sends a whole view down that path (no per-batch
rows): for article_stats when serving keeps item features in memory (item_cache.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from feedstack.features.aggregator import FeatureAggregator
from feedstack.features.rows import FeatureRows, take

ENTITIES = ("article", "user", "topic", "region")


VIEW_ENTITY = {"article_stats": "article", "user_features": "user", "topic_stats": "topic"}
VIEW_ENTITY["region_trending"] = "region"


def discard_online(agg: FeatureAggregator) -> dict[str, np.ndarray[Any, Any]]:
    """Clear the online flags without rendering; returns the entity indices that were set. Used
    at a snapshot tick, whose rows (written online, as of the tick) cover every entity changed
    before it."""
    return agg.discard_online()


def split_news(
    agg: FeatureAggregator, rows: list[FeatureRows], changed: dict[str, np.ndarray[Any, Any]]
) -> tuple[list[FeatureRows], list[FeatureRows]]:
    """Snapshot rows -> (rows of entities in ``changed``: news, the others: as-of upgrades)."""
    news, upgrades = [], []
    indexes = {"article": agg.articles, "user": agg.users, "topic": agg.topics}
    indexes["region"] = agg.regions
    for fr in rows:
        entity = VIEW_ENTITY[fr.view]
        ids = indexes[entity].ids
        fresh = {ids[i] for i in changed[entity].tolist()}
        is_news = [k in fresh for k in fr.keys]
        n_news = sum(is_news)
        if n_news == len(fr):
            news.append(fr)
        elif n_news == 0:
            upgrades.append(fr)
        else:
            news.append(take(fr, [i for i, f in enumerate(is_news) if f]))
            upgrades.append(take(fr, [i for i, f in enumerate(is_news) if not f]))
    return news, upgrades


def open_segment_rows(agg: FeatureAggregator) -> list[FeatureRows]:
    """Rows, as of the watermark, of every entity changed since the last snapshot tick (the
    minute still open). Reads the snapshot flags without clearing them: the state is unchanged."""
    at = agg.watermark_s
    if at is None:
        return []
    out = []
    builders = (agg.article_rows, agg.user_rows, agg.topic_rows, agg.region_rows)
    for entity, build in zip(ENTITIES, builders, strict=True):
        idx = agg.changed_since_snapshot(entity)
        if len(idx):
            out.append(build(idx, at))
    return out


@dataclass
class TickRows:
    """What applying a batch produced at snapshot ticks."""

    snapshots: list[FeatureRows] = field(default_factory=list)  # every row: offline
    news: list[FeatureRows] = field(default_factory=list)  # online now
    upgrades: list[FeatureRows] = field(default_factory=list)  # online, as-of upgrades only


def apply_cut_at_ticks(
    agg: FeatureAggregator,
    events: Sequence[dict[str, Any]],
    times: np.ndarray[Any, np.dtype[np.float64]],
) -> TickRows:
    """``agg.apply(events)``, dropping the online flags just before each event that crosses a
    snapshot tick (see the module docstring). ``times`` are the events' ``event_seconds``."""
    out = TickRows()
    i, n = 0, len(events)
    if n and agg.next_tick_s is None:  # the first event ever starts the clock
        out.snapshots += agg.apply(events[:1])
        i = 1
    while i < n:
        tick = agg.next_tick_s
        assert tick is not None
        crossing = np.flatnonzero(times[i:] >= tick)
        j = i + int(crossing[0]) if len(crossing) else n
        if j > i:
            out.snapshots += agg.apply(events[i:j])
        if j < n:
            changed = discard_online(agg)
            rows = agg.apply(events[j : j + 1])  # the snapshot at the tick, then the event
            news, upgrades = split_news(agg, rows, changed)
            out.snapshots += rows
            out.news += news
            out.upgrades += upgrades
        i = j + 1
    return out
