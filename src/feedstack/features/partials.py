"""Global views across partitions: each partition's share, and their sum.

When feature workers split a Kafka topic by user, a user's features come from one partition, but
article_stats, topic_stats and region_trending count the events of every user. Every decayed
counter is a sum over events, so the global value is the sum of the partitions' values brought
to the same time: each partition's aggregator keeps its share, and at every snapshot tick it
writes a *partial* (its article, topic and trending counters as of the tick, and which global
entities changed in the minute) into the workers' shared folder. One member (the one holding
partition 0) merges: a tick is final once every partition has passed it; the merged rows are
rendered by the aggregator's own row builders, so the values equal a single pass up to the order
of floating-point additions (summed per partition, then across: relative differences ~1e-12).

A partition that has passed tick T without a partial at T had no event in the minute before it:
its latest earlier partial, decayed to T, is its share. At the end of a bounded run each
partition writes a ``final`` partial (its state at its watermark, the entities changed since its
last tick): it stands for every later tick, and its changes join the first merged tick after
them, or the open minute rendered at the merged watermark, as a single pass would place them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from feedstack.features.aggregator import (
    _TAU_ART,
    _TAU_TOPIC,
    ALL_REGIONS,
    UNKNOWN,
    FeatureAggregator,
    _Index,
)
from feedstack.features.definitions import (
    ARTICLE_STATS,
    REGION_TRENDING,
    SNAPSHOT_EVERY_S,
    TOPIC_STATS,
    TRENDING_TAU_S,
)
from feedstack.features.rows import FeatureRows

GLOBAL_VIEWS = (ARTICLE_STATS.name, TOPIC_STATS.name, REGION_TRENDING.name)
_VIEW_KEYS = {ARTICLE_STATS.name: "art", TOPIC_STATS.name: "topic", REGION_TRENDING.name: "region"}


@dataclass
class Partial:
    """One partition's share of the global views as of ``tick_s`` (see the module docstring)."""

    partition: int
    tick_s: float  # the snapshot tick (final: the first tick after its watermark)
    passed_s: float  # the partition's event time has reached this (final: infinity)
    final: bool
    base_s: float
    watermark_s: float
    articles: list[str]
    art_cnt: np.ndarray[Any, Any]  # [n, 6], stored scaled to base_s
    art_topic: list[str]
    art_region: list[str]
    art_publish: np.ndarray[Any, Any]
    topics: list[str]
    topic_cnt: np.ndarray[Any, Any]
    regions: list[str]
    trend: np.ndarray[Any, Any]  # [regions, n]
    changed: dict[str, list[str]]  # view -> keys changed since the partition's previous tick

    # ------------------------------------------------------------------------ capture
    @classmethod
    def capture(
        cls,
        agg: FeatureAggregator,
        partition: int,
        tick_s: float,
        passed_s: float,
        changed: dict[str, list[str]],
        final: bool = False,
    ) -> Partial:
        assert agg.base_s is not None
        n = len(agg.articles)
        topics, regions = agg.topics.ids, agg.regions.ids
        return cls(
            partition=partition,
            tick_s=tick_s,
            passed_s=passed_s,
            final=final,
            base_s=agg.base_s,
            watermark_s=agg.watermark_s or tick_s,
            articles=list(agg.articles.ids),
            art_cnt=agg.art_cnt[:n].copy(),
            art_topic=[topics[t] if t >= 0 else "" for t in agg.art_topic[:n].tolist()],
            art_region=[regions[r] if r >= 0 else "" for r in agg.art_region[:n].tolist()],
            art_publish=agg.art_publish[:n].copy(),
            topics=list(topics),
            topic_cnt=agg.topic_cnt[: len(topics)].copy(),
            regions=list(regions),
            trend=agg.trend[: len(regions), :n].copy(),
            changed={v: list(changed.get(v, [])) for v in GLOBAL_VIEWS},
        )

    # ------------------------------------------------------------------------ files
    def save(self, folder: Path) -> Path:
        """Atomically, as ``p{partition}-{tick ms}.npz`` (``-final`` for a final one)."""
        folder.mkdir(parents=True, exist_ok=True)
        name = f"p{self.partition}-" + (
            "final" if self.final else f"{int(self.tick_s * 1000):015d}"
        )
        path = folder / f"{name}.npz"
        meta = {
            k: getattr(self, k)
            for k in ("partition", "tick_s", "final", "base_s", "watermark_s", "changed")
        }
        meta["passed_s"] = None if math.isinf(self.passed_s) else self.passed_s
        arrays: dict[str, Any] = {
            "meta": np.frombuffer(orjson.dumps(meta), dtype=np.uint8),
            "art_cnt": self.art_cnt,
            "art_publish": self.art_publish,
            "topic_cnt": self.topic_cnt,
            "trend": self.trend,
        }
        for name_ in ("articles", "art_topic", "art_region", "topics", "regions"):
            ids = getattr(self, name_)
            arrays[name_] = np.array(ids, dtype=str) if ids else np.zeros(0, dtype="<U1")
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> Partial:
        with np.load(path, allow_pickle=False) as d:
            meta = orjson.loads(d["meta"].tobytes())
            lists = {k: d[k].tolist() for k in ("articles", "art_topic", "art_region")}
            lists.update({k: d[k].tolist() for k in ("topics", "regions")})
            return cls(
                partition=meta["partition"],
                tick_s=meta["tick_s"],
                passed_s=math.inf if meta["passed_s"] is None else meta["passed_s"],
                final=meta["final"],
                base_s=meta["base_s"],
                watermark_s=meta["watermark_s"],
                art_cnt=d["art_cnt"].copy(),
                art_publish=d["art_publish"].copy(),
                topic_cnt=d["topic_cnt"].copy(),
                trend=d["trend"].copy(),
                changed=meta["changed"],
                **lists,
            )


def next_tick(t_s: float) -> float:
    return float(math.floor(t_s / SNAPSHOT_EVERY_S) * SNAPSHOT_EVERY_S + SNAPSHOT_EVERY_S)


# ---------------------------------------------------------------------------- the sum
def merged_aggregator(shares: Iterable[Partial]) -> FeatureAggregator:
    """An aggregator whose article, topic and trending state is the sum of ``shares`` (one per
    partition), rescaled to the newest base time; its row builders render the merged rows."""
    shares = list(shares)
    m = FeatureAggregator()
    base = max(s.base_s for s in shares)
    m.base_s = base
    names: dict[str, int] = {}
    for s in shares:
        for a in s.articles:
            names.setdefault(a, len(names))
    m.articles = _Index(names)
    for s in shares:
        for t in s.topics:
            m.topics.get(t)
        for r in s.regions:
            m.regions.get(r)
    n = len(names)
    m.art_cnt = np.zeros((n, _TAU_ART.shape[0]))
    m.art_topic = np.full(n, -1, np.int32)
    m.art_region = np.full(n, -1, np.int32)
    m.art_publish = np.zeros(n, np.int64)
    m.topic_cnt = np.zeros((len(m.topics), 2))
    m.trend = np.zeros((len(m.regions), n))
    for s in shares:
        idx = np.fromiter((names[a] for a in s.articles), np.int64, len(s.articles))
        m.art_cnt[idx] += s.art_cnt * np.exp((s.base_s - base) / _TAU_ART)
        for i, topic, region in zip(idx.tolist(), s.art_topic, s.art_region, strict=True):
            if topic:
                m.art_topic[i] = m.topics.pos[topic]
            if region:
                m.art_region[i] = m.regions.pos[region]
        np.maximum.at(m.art_publish, idx, s.art_publish)
        t_idx = np.fromiter((m.topics.pos[t] for t in s.topics), np.int64, len(s.topics))
        m.topic_cnt[t_idx] += s.topic_cnt * np.exp((s.base_s - base) / _TAU_TOPIC)
        r_idx = np.fromiter((m.regions.pos[r] for r in s.regions), np.int64, len(s.regions))
        scaled = s.trend * math.exp((s.base_s - base) / TRENDING_TAU_S)
        m.trend[np.ix_(r_idx, idx)] += scaled
    m.watermark_s = max(s.watermark_s for s in shares)
    return m


def render(m: FeatureAggregator, changed: dict[str, set[str]], at_s: float) -> list[FeatureRows]:
    """Rows of the changed global entities of merged state ``m`` as of ``at_s``."""
    out = []
    builders = (
        (ARTICLE_STATS.name, m.articles, m.article_rows),
        (TOPIC_STATS.name, m.topics, m.topic_rows),
        (REGION_TRENDING.name, m.regions, m.region_rows),
    )
    for view, index, build in builders:
        keys = changed.get(view) or set()
        idx = sorted(index.pos[k] for k in keys if k in index.pos)
        if idx:
            out.append(build(np.asarray(idx, dtype=np.int64), at_s))
    return out


__all__ = [
    "ALL_REGIONS",
    "GLOBAL_VIEWS",
    "UNKNOWN",
    "Partial",
    "merged_aggregator",
    "next_tick",
    "render",
]
