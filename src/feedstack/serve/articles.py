"""What the serving process knows about every article, and the lists it answers from when the
personalized path cannot: one immutable snapshot, rebuilt by the refresh thread.

The snapshot reads the item cache's aggregator (features/item_cache.py) in the thread that
refreshes it, so it is consistent; request threads only ever read a published snapshot (no lock).

Fallback lists (``fallback_pool`` each, per region; a region's lists hold its local articles and
the global ones, the ``None`` region all of them), every article live (published, younger than
``max_age_h``):

- ``trending``: clicks decayed over 1 h (click velocity, the item cache's ``clicks_1h``);
- ``popular``: clicks decayed over 24 h;
- ``fresh``: newest first: the content-based choice for a user with no history is the news
  itself (the content source needs a history to embed; a cold user has none).

Why not the region's trending as the stream worker computes it (``region_trending``): the item
cache keeps no users (features/item_cache.py), so it cannot tell a click's region; the article's
own region is what "popular in this region" can mean here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt

from feedstack.features.aggregator import FeatureAggregator
from feedstack.features.definitions import ARTICLE_COUNTERS

IntArray = npt.NDArray[np.int64]
F64Array = npt.NDArray[np.float64]
LISTS = ("trending", "popular", "fresh")
NO_REGION = ("global", "unknown", "all")  # article regions that belong to every region
_CLICKS_1H = ARTICLE_COUNTERS.index("clicks_1h")
_CLICKS_24H = ARTICLE_COUNTERS.index("clicks_24h")


@dataclass(frozen=True)
class ArticleSnapshot:
    """Attributes of every article the serving process has seen, by the aggregator's index."""

    at_s: float  # when the fallback lists were computed
    ids: list[str]
    pos: dict[str, int]  # the aggregator's index: shared, only grows; bound-check with ``n``
    topic: IntArray  # index into ``topics``, -1 unknown
    region: IntArray  # index into ``regions``
    publish_s: F64Array  # NaN: never published (seen in an impression or click only)
    topics: list[str]
    regions: list[str]
    fallback: dict[str | None, dict[str, IntArray]] = field(default_factory=dict)
    merged: dict[str | None, tuple[IntArray, list[str]]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.ids)

    def index(self, article_ids: Sequence[str]) -> IntArray:
        """The index of each article, -1 for one this snapshot does not know."""
        # map over the bound method: half the cost of a generator expression (500 ids/request)
        found = map(self.pos.get, article_ids, repeat(-1))
        idx = np.fromiter(found, np.int64, len(article_ids))
        idx[idx >= self.n] = -1
        return idx

    def global_region(self) -> npt.NDArray[np.bool_]:
        return np.isin(self.region, [j for j, r in enumerate(self.regions) if r in NO_REGION])

    def lists(self, region: str | None) -> dict[str, IntArray]:
        """The fallback lists of ``region`` (all regions' when unknown)."""
        return self.fallback.get(region) or self.fallback.get(None) or {}

    def fallback_order(self, region: str | None) -> tuple[IntArray, list[str]]:
        """The region's lists merged round-robin (article indices, the list each came from)."""
        found = self.merged.get(region) or self.merged.get(None)
        return found if found is not None else (np.zeros(0, np.int64), [])


EMPTY = ArticleSnapshot(
    0.0,
    [],
    {},
    np.zeros(0, np.int64),
    np.zeros(0, np.int64),
    np.zeros(0),
    [],
    [],
)


def snapshot(agg: FeatureAggregator, at_s: float, max_age_s: float, pool: int) -> ArticleSnapshot:
    """The aggregator's articles now, with fallback lists of ``pool`` live articles each."""
    n = len(agg.articles)
    topic = agg.art_topic[:n].astype(np.int64)
    publish = agg.art_publish[:n].astype(np.float64)
    publish[topic < 0] = np.nan  # seen before (or without) its publish event
    snap = ArticleSnapshot(
        at_s,
        list(agg.articles.ids[:n]),
        agg.articles.pos,
        topic,
        agg.art_region[:n].astype(np.int64),
        publish,
        list(agg.topics.ids),
        list(agg.regions.ids),
    )
    age = at_s - publish
    live = (age >= 0) & (age < max_age_s)  # NaN compares False: never published, never live
    # Stored counters share one scale per column (the aggregator's base time), so their order
    # is the order of the decayed values at any time.
    counts: Any = agg.art_cnt[:n]
    scores = {
        "trending": counts[:, _CLICKS_1H],
        "popular": counts[:, _CLICKS_24H],
        "fresh": np.nan_to_num(publish, nan=-np.inf),
    }
    everywhere = snap.global_region()
    regions: list[str | None] = [None, *(r for r in snap.regions if r not in NO_REGION)]
    for name in regions:
        mine = (
            live
            if name is None
            else live & (everywhere | (snap.region == snap.regions.index(name)))
        )
        snap.fallback[name] = {k: _top(v, mine, pool) for k, v in scores.items()}
        snap.merged[name] = round_robin(snap.fallback[name])
    return snap


def round_robin(lists: dict[str, IntArray]) -> tuple[IntArray, list[str]]:
    """One of each list in turn (in LISTS order), skipping what an earlier list gave: a page
    of the merged order shows every kind near the top."""
    merged: list[int] = []
    labels: list[str] = []
    seen: set[int] = set()
    iters = [(name, iter(lists[name].tolist())) for name in LISTS if name in lists]
    while iters:
        for entry in list(iters):
            name, it = entry
            for j in it:
                if j not in seen:
                    seen.add(j)
                    merged.append(j)
                    labels.append(name)
                    break
            else:
                iters.remove(entry)
    return np.asarray(merged, dtype=np.int64), labels


def _top(score: F64Array, mask: npt.NDArray[np.bool_], k: int) -> IntArray:
    """Indices of the ``k`` best of ``score`` where ``mask``, best first (ties: lower index)."""
    idx = np.flatnonzero(mask)
    if idx.size > k:
        part = np.argpartition(-score[idx], k - 1)[:k]
        idx = idx[part]
    order = np.lexsort((idx, -score[idx]))
    return idx[order].astype(np.int64)
