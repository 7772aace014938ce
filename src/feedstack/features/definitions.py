"""The feature definitions: the one place that says what each feature is.

Windowed counts are *exponentially decayed* counts: ``count_1h`` at time t is
``sum_i exp(-(t - t_i) / 1 h)`` over the events before t, i.e. a window whose weights fade with
age instead of dropping off a cliff. Why: a decayed count is a pair (value, as-of time) that any
reader brings forward to its own time exactly (``decay``); it needs O(1) state per entity instead
of a bucket ring, and adding events is commutative, so the stream and the backfill agree to the
bit. A value in a store is always "as of" its row's ``event_timestamp``; readers call ``decay`` to
move it to request time (serving) or to impression time (training).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Time constants of the decayed windows, seconds.
WINDOWS_S: dict[str, float] = {"5m": 300.0, "1h": 3_600.0, "24h": 86_400.0}
AFFINITY_TAU_S = 3 * 86_400.0  # user topic affinity fades over days (interests drift slowly)
TRENDING_TAU_S = 3_600.0  # trending = click velocity over the last hour or so
# Beta prior of the smoothed CTR: (clicks + W * P) / (impressions + W). P is a typical feed CTR,
# W the number of pseudo-impressions a new article needs before its own CTR dominates.
CTR_PRIOR = 0.05
CTR_PRIOR_WEIGHT = 20.0
RECENT_CLICKS = 20  # the user's recent clicked items kept
TOP_TOPICS = 8  # topics kept in the user's affinity vector
TRENDING_TOP = 100  # articles kept per region in the trending list
SNAPSHOT_EVERY_S = 60  # offline feature rows: one per changed entity per minute of event time
REBASE_EVERY_S = 3_600  # decayed counters are rescaled hourly to keep exponents small

ARTICLE_COUNTERS = tuple(
    f"{kind}_{w}" for w in WINDOWS_S for kind in ("impressions", "clicks")
)  # impressions_5m, clicks_5m, impressions_1h, ...
ARTICLE_TAUS = tuple(WINDOWS_S[name.rsplit("_", 1)[1]] for name in ARTICLE_COUNTERS)


@dataclass(frozen=True)
class Feature:
    name: str
    dtype: str  # float32 | int64 | string | float32_list | string_list
    description: str


@dataclass(frozen=True)
class View:
    """A feature view: one entity, its features, and how long a value stays usable."""

    name: str
    entity: str  # the join key
    features: tuple[Feature, ...]
    ttl_s: int
    description: str

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]


def _counts(prefix: str, windows: tuple[str, ...]) -> tuple[Feature, ...]:
    return tuple(
        Feature(f"{kind}_{w}", "float32", f"{prefix} {kind}, decayed over {w}")
        for w in windows
        for kind in ("impressions", "clicks")
    )


ARTICLE_STATS = View(
    "article_stats",
    "article_id",
    (
        *_counts("article", tuple(WINDOWS_S)),
        Feature("topic", "string", "topic of the article"),
        Feature("region", "string", "region of the article ('global' or a region)"),
        Feature("publish_time_s", "int64", "publish time, Unix seconds"),
    ),
    ttl_s=7 * 86_400,
    description="Per-article engagement counts (decayed windows) and attributes.",
)
USER_FEATURES = View(
    "user_features",
    "user_id",
    (
        Feature("region", "string", "the user's region ('unknown' before a profile event)"),
        Feature("affinity_topics", "string_list", f"top {TOP_TOPICS} topics by affinity"),
        Feature("affinity_scores", "float32_list", "decayed clicks per topic, same order"),
        Feature("recent_clicks", "string_list", f"last {RECENT_CLICKS} clicked articles"),
        *_counts("user", ("24h",)),
    ),
    ttl_s=30 * 86_400,
    description="Per-user topic affinity (decayed), recent clicks and activity.",
)
TOPIC_STATS = View(
    "topic_stats",
    "topic",
    _counts("topic", ("1h",)),
    ttl_s=7 * 86_400,
    description="Per-topic engagement (decayed over 1 h): which topics surge.",
)
REGION_TRENDING = View(
    "region_trending",
    "region",
    (
        Feature("trending_items", "string_list", f"top {TRENDING_TOP} articles by click velocity"),
        Feature("trending_scores", "float32_list", "decayed clicks (1 h), same order"),
    ),
    ttl_s=2 * 86_400,
    description="What is trending in each region right now.",
)
VIEWS: tuple[View, ...] = (ARTICLE_STATS, USER_FEATURES, TOPIC_STATS, REGION_TRENDING)
# Views the streaming worker writes online only at minute ticks: serving reads article, topic
# and trending features from its in-memory cache (item_cache.py), user features from the store.
ONLINE_AT_TICKS = (ARTICLE_STATS.name, TOPIC_STATS.name, REGION_TRENDING.name)
VIEWS_BY_NAME = {v.name: v for v in VIEWS}
ENTITIES = {"article_id": "article", "user_id": "user", "topic": "topic", "region": "region"}


def definitions_version() -> str:
    """A short hash of every definition and constant: lineage records it with each model."""
    import hashlib

    text = repr((VIEWS, WINDOWS_S, AFFINITY_TAU_S, TRENDING_TAU_S, CTR_PRIOR, CTR_PRIOR_WEIGHT))
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def decay(value: float, as_of_s: float, at_s: float, tau_s: float) -> float:
    """Bring a decayed count forward from its as-of time to ``at_s`` (never backwards)."""
    return value * math.exp(-max(at_s - as_of_s, 0.0) / tau_s)


def smoothed_ctr(clicks: float, impressions: float) -> float:
    return (clicks + CTR_PRIOR_WEIGHT * CTR_PRIOR) / (impressions + CTR_PRIOR_WEIGHT)
