"""The articles of the world: topic, region, hidden quality, publish time, title and text.

Article ``a{i}`` is row i; rows are in publish order, so the articles live at time t (published
within the last ``max_age_h`` hours) are one contiguous index range. Publish times are a diurnal
Poisson process conditioned on the article count: given the count, arrival times are independent
draws from the normalized intensity (hourly weights in the region's local time; "global" articles
follow UTC). A backlog of ``backlog_h`` hours before the start fills the first feeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feedstack.world.config import GLOBAL_REGION, WorldConfig
from feedstack.world.headlines import write_headlines
from feedstack.world.timeline import US_PER_DAY, US_PER_H, to_us

_CATALOG_STREAM = 2
GLOBAL = -1  # region index of global articles


def article_id(i: int) -> str:
    return f"a{i}"


@dataclass(frozen=True, eq=False)
class Catalog:
    config: WorldConfig
    topic: npt.NDArray[np.int16]  # index into config.topics
    region: npt.NDArray[np.int8]  # index into config.population.regions, or GLOBAL
    quality: npt.NDArray[np.float64]  # hidden; never logged
    publish_us: npt.NDArray[np.int64]  # ascending
    half_life_h: npt.NDArray[np.float64]
    titles: list[str]
    texts: list[str]

    @classmethod
    def build(cls, config: WorldConfig) -> Catalog:
        c = config.catalog
        rng = np.random.default_rng([config.seed, _CATALOG_STREAM])
        m, regions = config.articles, config.population.regions
        shares = np.array([r.share for r in regions])
        local = rng.random(m) < c.local_share
        region = np.where(
            local, rng.choice(len(regions), size=m, p=shares / shares.sum()), GLOBAL
        ).astype(np.int8)
        tshares = np.array(c.topic_shares)
        topic = rng.choice(len(tshares), size=m, p=tshares / tshares.sum()).astype(np.int16)
        quality = rng.standard_normal(m) * c.quality_sigma
        publish = _publish_times(config, region, rng)
        order = np.argsort(publish, kind="stable")
        topic, region, quality, publish = (
            topic[order],
            region[order],
            quality[order],
            publish[order],
        )
        names = config.region_names
        region_names = [GLOBAL_REGION if r == GLOBAL else names[r] for r in region.tolist()]
        titles, texts = write_headlines(
            [config.topics[t] for t in topic.tolist()], region_names, rng
        )
        half_life = np.array(c.topic_half_life_h, dtype=np.float64)[topic]
        return cls(config, topic, region, quality, publish, half_life, titles, texts)

    @property
    def size(self) -> int:
        return int(self.topic.shape[0])

    def region_name(self, i: int) -> str:
        r = int(self.region[i])
        return GLOBAL_REGION if r == GLOBAL else self.config.region_names[r]

    def live_range(self, at_us: int) -> tuple[int, int]:
        """Index range [lo, hi) of articles published in (at - max_age, at]."""
        max_age_us = int(self.config.catalog.max_age_h * US_PER_H)
        lo = int(np.searchsorted(self.publish_us, at_us - max_age_us, side="right"))
        hi = int(np.searchsorted(self.publish_us, at_us, side="right"))
        return lo, hi


def _publish_times(
    config: WorldConfig, region: npt.NDArray[np.int8], rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """Hour bins over [start - backlog, end); per region, pick bins by diurnal weight."""
    c = config.catalog
    first_us = to_us(config.start) - int(c.backlog_h * US_PER_H)
    end_us = to_us(config.start) + int(config.days * US_PER_DAY)
    n_bins = math.ceil((end_us - first_us) / US_PER_H)
    edges = np.minimum(first_us + np.arange(n_bins + 1, dtype=np.int64) * US_PER_H, end_us)
    widths = np.diff(edges)
    utc_hour = (edges[:-1] // US_PER_H) % 24
    diurnal = np.array(c.publish_diurnal)
    out = np.empty(region.shape[0], dtype=np.int64)
    offsets = [0] + [r.utc_offset_h for r in config.population.regions]
    for code, offset in zip([GLOBAL, *range(len(offsets) - 1)], offsets, strict=True):
        rows = np.flatnonzero(region == code)
        weights = diurnal[(utc_hour + offset) % 24] * widths
        bins = rng.choice(n_bins, size=rows.shape[0], p=weights / weights.sum())
        out[rows] = edges[bins] + (rng.random(rows.shape[0]) * widths[bins]).astype(np.int64)
    return out
