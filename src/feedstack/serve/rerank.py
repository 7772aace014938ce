"""The pure part of the request path: ranking features, filters, diversity, top k.

Ranking features are assembled by the training code itself: the context columns come from
``features.context.Context.features`` over a one-user Context built from what the server has (the
user's online row, the in-memory article state), and the first-stage columns are the blend's,
stored in the candidate cache by the batch job (train/candidate_cache.py) exactly as the blend
computed them. tests/unit/test_serve_rerank.py proves that, for the same state, the rows equal
what ``Context.read`` gives training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from feedstack.core.errors import DataError
from feedstack.features.context import ARTICLE_COLUMNS, CONTEXT_FEATURES, Context
from feedstack.features.definitions import AFFINITY_TAU_S, ARTICLE_COUNTERS, WINDOWS_S, decay
from feedstack.serve.articles import NO_REGION, ArticleSnapshot

IntArray = npt.NDArray[np.int64]
FloatMatrix = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]
_N_ITEM = len(ARTICLE_COUNTERS) + len(WINDOWS_S)  # counters and CTRs, as the item cache gives


def user_context(
    snap: ArticleSnapshot,
    items: IntArray,
    item_features: FloatMatrix,
    user: Mapping[str, Any] | None,
    at_s: float,
) -> Context:
    """A Context for one user (row 0) over the candidates ``items`` (snapshot indices, -1
    unknown; candidate j is the Context's item j).

    ``item_features``: the item cache's ``features(ids, at_s)`` rows (counters, CTRs, age).
    ``user``: the user's online ``user_features`` row (with ``as_of_s``), or None for a user
    the store does not know; its decayed values are brought forward to ``at_s``.
    """
    n = items.size
    known = items >= 0
    article = np.zeros((n, len(ARTICLE_COLUMNS)), dtype=np.float32)
    article[:, -1] = np.nan
    article[known, :_N_ITEM] = item_features[known, :_N_ITEM]
    publish = snap.publish_s[items[known]]
    # As Context.read: age in hours from the whole-second publish time, NaN if never published.
    article[known, -1] = np.where(publish > 0, (at_s - publish) / 3600.0, np.nan)
    art_topic = np.where(known, snap.topic[np.maximum(items, 0)], -1)
    regions: dict[str, int] = {}

    def region_index(name: str) -> int:
        if name in NO_REGION:
            return -1
        return regions.setdefault(name, len(regions))

    names = snap.regions
    art_region = np.full(n, -1, dtype=np.int64)
    if n:
        by_index = np.array([region_index(r) for r in names] or [-1], dtype=np.int64)
        art_region[known] = by_index[snap.region[items[known]]]

    counts = np.zeros((1, 2), dtype=np.float32)
    affinity = np.zeros((1, max(1, len(snap.topics))), dtype=np.float32)
    user_region = np.full(1, -1, dtype=np.int64)
    if user is not None:
        # Brought forward by the definitions' own decay, as every reader of an online row.
        as_of = float(user["as_of_s"])
        day = WINDOWS_S["24h"]
        counts[0, 0] = np.float32(decay(float(user["impressions_24h"] or 0.0), as_of, at_s, day))
        counts[0, 1] = np.float32(decay(float(user["clicks_24h"] or 0.0), as_of, at_s, day))
        topic_of = {t: j for j, t in enumerate(snap.topics)}
        for t, s in zip(user["affinity_topics"] or [], user["affinity_scores"] or [], strict=True):
            j = topic_of.get(t)
            if j is not None:  # a topic this process has not seen yet: no candidate has it
                affinity[0, j] = np.float32(decay(float(s), as_of, at_s, AFFINITY_TAU_S))
        user_region[0] = region_index(str(user["region"] or "unknown"))
    zero = np.zeros(1, dtype=np.int64)
    return Context(at_s, article, art_topic, art_region, zero, counts, affinity, user_region)


def context_features(ctx: Context) -> FloatMatrix:
    """``[n, len(CONTEXT_FEATURES)]``: every candidate of the one-user Context."""
    n = ctx.article.shape[0]
    return ctx.features(np.zeros(n, dtype=np.int64), np.arange(n, dtype=np.int64))


class ColumnPlan:
    """Where each ranker column comes from: the cached first-stage features or the context."""

    def __init__(self, ranker_names: Sequence[str], blend_names: Sequence[str]) -> None:
        blend = {name: j for j, name in enumerate(blend_names)}
        ctx = {name: j for j, name in enumerate(CONTEXT_FEATURES)}
        missing = [n for n in ranker_names if n not in blend and n not in ctx]
        if missing:
            raise DataError(f"ranker features not in the candidate lists: {missing}")
        self.from_blend = np.array([blend.get(n, -1) for n in ranker_names], dtype=np.int64)
        self.from_ctx = np.array([ctx.get(n, -1) for n in ranker_names], dtype=np.int64)

    def assemble(self, blend: FloatMatrix, context: FloatMatrix) -> FloatMatrix:
        out = np.empty((blend.shape[0], self.from_blend.size), dtype=np.float32)
        b = self.from_blend >= 0
        out[:, b] = blend[:, self.from_blend[b]]
        out[:, ~b] = context[:, self.from_ctx[~b]]
        return out


def keep(
    ids: Sequence[str],
    age_h: npt.NDArray[np.floating[Any]],
    excluded: set[str],
    max_age_h: float,
) -> BoolArray:
    """Candidates that may be shown: not clicked or hidden by the user, published, not too old."""
    fresh = np.asarray((age_h >= 0) & (age_h < max_age_h), dtype=bool)  # NaN: never published
    if excluded:
        fresh &= ~np.fromiter(map(excluded.__contains__, ids), bool, len(ids))
    return fresh


def keep_items(ids: Sequence[str], excluded: set[str]) -> BoolArray:
    """Items that may be shown when age does not apply: not clicked or hidden by the user."""
    if not excluded:
        return np.ones(len(ids), dtype=bool)
    return ~np.fromiter(map(excluded.__contains__, ids), bool, len(ids))


def diversify(order: IntArray, topic: IntArray, k: int, max_per_topic: int) -> IntArray:
    """The first ``k`` of ``order`` with at most ``max_per_topic`` per topic (-1: no topic, no
    cap). If the cap leaves fewer than ``k``, the page is filled with the skipped ones in
    order: a full page beats a strictly diverse short one."""
    chosen: list[int] = []
    skipped: list[int] = []
    per: dict[int, int] = {}
    for j in order.tolist():
        if len(chosen) == k:
            break
        t = int(topic[j])
        if t >= 0 and per.get(t, 0) >= max_per_topic:
            skipped.append(j)
            continue
        per[t] = per.get(t, 0) + 1
        chosen.append(j)
    chosen += skipped[: k - len(chosen)]
    return np.asarray(chosen, dtype=np.int64)
