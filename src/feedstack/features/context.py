"""Point-in-time ranking features of (user, article) pairs, read from the feature aggregator.

The aggregator (features/aggregator.py) is the one definition the stream worker, the backfill and
the serving item cache run. Replaying the log through it and reading its rows *as of* time t
(``article_rows`` / ``user_rows``) gives exactly the values a server would have read at t: no
event at or after t is in them, and no second definition of a feature exists to drift.

Columns (named like features/training.py's training table):

- article: decayed impressions and clicks over 5 min / 1 h / 24 h, their smoothed CTRs, age in
  hours (NaN if unknown: LightGBM's "missing");
- user: decayed impressions and clicks over 24 h (activity);
- pair: the user's decayed affinity to the article's topic (their top TOP_TOPICS topics, as the
  online row holds them), that affinity's share of the user's total, and whether the article is
  local to the user's region or to another one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from feedstack.core.errors import InputError
from feedstack.features.aggregator import FeatureAggregator
from feedstack.features.definitions import ARTICLE_COUNTERS, WINDOWS_S, smoothed_ctr
from feedstack.features.rows import pylist

IntArray = npt.NDArray[np.int64]
FloatMatrix = npt.NDArray[np.float32]

ARTICLE_COLUMNS = (
    *(f"a_{c}" for c in ARTICLE_COUNTERS),
    *(f"a_ctr_{w}" for w in WINDOWS_S),
    "a_age_h",
)
USER_COLUMNS = ("u_impressions_24h", "u_clicks_24h")
PAIR_COLUMNS = ("u_topic_affinity", "u_topic_share", "a_local", "a_foreign")
CONTEXT_FEATURES = (*ARTICLE_COLUMNS, *USER_COLUMNS, *PAIR_COLUMNS)
_GLOBAL = "global"


@dataclass(frozen=True)
class Context:
    """Features as of ``at_s`` of every article (by our item index) and of some users."""

    at_s: float
    article: FloatMatrix  # [n_items, len(ARTICLE_COLUMNS)]
    article_topic: IntArray  # index into ``topics``, -1 unknown
    article_region: IntArray  # index into ``regions``, -1 global or unknown
    user_keys: IntArray  # sorted user indices: user_keys[j] owns row j of the arrays below
    user_counts: FloatMatrix  # [m, 2]
    user_affinity: FloatMatrix  # [m, len(topics)]
    user_region: IntArray  # [m], index into ``regions``, -1 unknown

    @classmethod
    def read(
        cls,
        agg: FeatureAggregator,
        at_s: float,
        article_ids: Sequence[str],
        user_ids: Sequence[str],
        users: IntArray,
    ) -> Context:
        """Rows of every known article and of ``users`` (indices into ``user_ids``) at ``at_s``."""
        n = len(article_ids)
        topics = {t: j for j, t in enumerate(agg.topics.ids)}
        regions: dict[str, int] = {}

        def region_index(name: str) -> int:
            if name in (_GLOBAL, "unknown", "all"):
                return -1
            return regions.setdefault(name, len(regions))

        article = np.zeros((n, len(ARTICLE_COLUMNS)), dtype=np.float32)
        article[:, -1] = np.nan
        art_topic = np.full(n, -1, dtype=np.int64)
        art_region = np.full(n, -1, dtype=np.int64)
        pos = agg.articles.pos
        ours = np.array([pos.get(a, -1) for a in article_ids], dtype=np.int64)
        known = np.flatnonzero(ours >= 0)
        if known.size:
            rows = agg.article_rows(ours[known], at_s)
            k = len(ARTICLE_COUNTERS)
            for j, name in enumerate(ARTICLE_COUNTERS):
                article[known, j] = rows.columns[name]
            imps: Any = article[known, 0:k:2].astype(np.float64)
            clicks: Any = article[known, 1:k:2].astype(np.float64)
            article[known, k : k + len(WINDOWS_S)] = smoothed_ctr(clicks, imps)
            publish = rows.columns["publish_time_s"].astype(np.float64)
            article[known, -1] = np.where(publish > 0, (at_s - publish) / 3600.0, np.nan)
            art_topic[known] = [topics.get(t, -1) for t in rows.columns["topic"]]
            art_region[known] = [region_index(r) for r in rows.columns["region"]]

        wanted = np.unique(np.asarray(users, np.int64))
        m = wanted.size
        counts = np.zeros((m, 2), dtype=np.float32)
        affinity = np.zeros((m, max(1, len(topics))), dtype=np.float32)
        user_region = np.full(m, -1, dtype=np.int64)
        upos = agg.users.pos
        theirs = np.array([upos.get(user_ids[u], -1) for u in wanted.tolist()], dtype=np.int64)
        seen = np.flatnonzero(theirs >= 0)
        if seen.size:
            rows = agg.user_rows(theirs[seen], at_s)
            counts[seen, 0] = rows.columns["impressions_24h"]
            counts[seen, 1] = rows.columns["clicks_24h"]
            all_names = pylist(rows.columns["affinity_topics"])
            all_scores = pylist(rows.columns["affinity_scores"])
            for j, row in enumerate(seen.tolist()):
                names = all_names[j]
                scores = all_scores[j]
                affinity[row, [topics[t] for t in names]] = scores
                user_region[row] = region_index(rows.columns["region"][j])
        return cls(at_s, article, art_topic, art_region, wanted, counts, affinity, user_region)

    def features(self, users: IntArray, items: IntArray) -> FloatMatrix:
        """[len(items), len(CONTEXT_FEATURES)] for the pairs (users[r], items[r]); every user
        must be among those the context was read for."""
        users = np.asarray(users, np.int64)
        row = np.searchsorted(self.user_keys, users)
        if row.size and (row.max() >= self.user_keys.size or (self.user_keys[row] != users).any()):
            raise InputError("context: a user it was not read for")
        items = np.asarray(items, np.int64)
        out = np.empty((items.size, len(CONTEXT_FEATURES)), dtype=np.float32)
        a = len(ARTICLE_COLUMNS)
        out[:, :a] = self.article[items]
        out[:, a : a + 2] = self.user_counts[row]
        topic = self.article_topic[items]
        score = np.where(topic >= 0, self.user_affinity[row, np.maximum(topic, 0)], 0.0)
        total = self.user_affinity[row].sum(axis=1)
        out[:, a + 2] = score
        out[:, a + 3] = np.where(total > 0, score / np.maximum(total, 1e-30), 0.0)
        art_region, user_region = self.article_region[items], self.user_region[row]
        local = art_region >= 0
        out[:, a + 4] = local & (art_region == user_region)
        out[:, a + 5] = local & (art_region != user_region) & (user_region >= 0)
        return out
