"""The click model: true relevance, position bias, and sampled feedback on a shown list.

A position-based model (Craswell et al., WSDM 2008): the item at position p (0-based) is examined
with probability ``examination(p) = 1 / (1 + p) ** eta`` and, if examined, clicked with probability
``relevance(u, a, t)``, independently across positions. So the expected number of clicks on a list
is ``sum_p examination(p) * relevance(u, a_p, t)``, which ``NewsWorld.expected_clicks`` returns.

relevance(u, a, t) = freshness(a, t) * sigmoid(bias + topic_weight * log(T * interest_u(topic_a))
                     + quality_weight * quality_a + region term)
freshness(a, t)    = 2 ** (-age_h / half_life_h(topic_a)) for age >= 0, else 0 (not yet published)

where T is the number of topics (a user with uniform interests gets a log-term of 0), and the
region term is ``local_boost`` for an article of the user's region, ``foreign_penalty`` for another
region's, 0 for a global one. Clicked items are read for a lognormal dwell whose median grows with
relevance; examined, unclicked items are hidden with probability ``hide_rate * (1 - rel) ** 2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feedstack.world.catalog import GLOBAL, Catalog
from feedstack.world.config import WorldConfig
from feedstack.world.timeline import US_PER_H

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]

_MIN_INTEREST = 1e-6  # keeps log(T * interest) finite for topics a user never reads
_FIRST_ACTION_MS = 1_000  # nothing happens in the first second after a list is shown
_MIN_DWELL_MS = 1_000


@dataclass(frozen=True, eq=False)
class Feedback:
    """Sampled reactions to n shown lists of width k; offsets are from the list's show time."""

    click: Mask  # (n, k)
    hide: Mask  # (n, k)
    dwell_ms: I64  # (n, k), meaningful where click
    action_offset_us: I64  # (n, k): when the item was clicked or hidden

    @property
    def dwell_offset_us(self) -> I64:
        """When the dwell ends (the Dwell event is logged then)."""
        out: I64 = self.action_offset_us + self.dwell_ms * 1_000
        return out


class ClickModel:
    def __init__(self, config: WorldConfig, catalog: Catalog) -> None:
        self.params = config.clicks
        self.catalog = catalog
        self.n_topics = len(config.topics)

    def examination(self, positions: npt.ArrayLike) -> F64:
        """P(examined) of 0-based positions."""
        p = np.asarray(positions, dtype=np.float64)
        out: F64 = (1.0 + p) ** -self.params.eta
        return out

    def relevance(self, interests: F64, user_region: I64, items: I64, at_us: I64) -> F64:
        """True relevance, (n, k), of items[i] (article rows; -1 = empty slot -> 0) to user i.

        ``interests`` is (n, topics) for the users of the rows, ``at_us`` (n,) the time of each row.
        """
        c, p = self.catalog, self.params
        valid = items >= 0
        a = np.where(valid, items, 0)
        topic_interest = np.take_along_axis(interests, c.topic[a].astype(np.int64), axis=1)
        art_region = c.region[a].astype(np.int64)
        region_term = np.where(
            art_region == GLOBAL,
            0.0,
            np.where(art_region == user_region[:, None], p.local_boost, p.foreign_penalty),
        )
        logit = (
            p.bias
            + p.topic_weight * np.log(self.n_topics * np.maximum(topic_interest, _MIN_INTEREST))
            + p.quality_weight * c.quality[a]
            + region_term
        )
        age_h = (at_us[:, None] - c.publish_us[a]) / US_PER_H
        fresh = np.where(age_h >= 0, np.exp2(-np.maximum(age_h, 0.0) / c.half_life_h[a]), 0.0)
        out: F64 = np.where(valid, fresh / (1.0 + np.exp(-logit)), 0.0)
        return out

    def sample(self, relevance: F64, shown: Mask, rng: np.random.Generator) -> Feedback:
        """Clicks, hides, dwell and timing for lists with these relevances, (n, k).

        ``shown`` marks the filled slots (a short list leaves the tail of its row empty).

        Every draw has a fixed shape, so the stream of ``rng`` does not depend on outcomes.
        """
        p = self.params
        n, k = relevance.shape
        exam = self.examination(np.arange(k))[None, :]
        u_click, u_hide = rng.random((n, k)), rng.random((n, k))
        z = rng.standard_normal((n, k))
        think_ms = rng.exponential(p.think_ms, size=(n, k)) if p.think_ms > 0 else np.zeros((n, k))
        click = shown & (u_click < exam * relevance)
        hide = shown & ~click & (u_hide < exam * p.hide_rate * (1.0 - relevance) ** 2)
        dwell = p.dwell_median_ms * np.exp(p.dwell_relevance_gain * relevance + p.dwell_sigma * z)
        dwell_ms = np.clip(np.rint(dwell), _MIN_DWELL_MS, p.dwell_max_ms).astype(np.int64)
        # The reader scans down the list and reads each clicked item before moving on, so an
        # item is acted on after the scan to its position plus the reading of earlier clicks.
        spent = np.where(click, think_ms + dwell_ms, 0.0)
        before = np.cumsum(spent, axis=1) - spent
        act_ms = _FIRST_ACTION_MS + np.arange(k)[None, :] * p.scan_ms + before + think_ms
        return Feedback(click, hide, dwell_ms, np.rint(act_ms * 1_000).astype(np.int64))
