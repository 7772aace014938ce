"""Trending: what the user's region is clicking right now, and what was just published.

State, per region (plus one row for all regions), per article, as exponentially decayed counts
(the same kind of window as every counter in features/definitions.py):

- ``velocity``: clicks decayed over ``velocity_tau_s`` (TRENDING_TAU_S, 1 h): click velocity;
- ``clicks``, ``impressions``: decayed over ``ctr_tau_s`` (24 h), for a smoothed CTR
  ``(clicks + W·P) / (impressions + W)`` (definitions.smoothed_ctr: a Beta prior, so an article
  shown 3 times and clicked once does not outrank one with 40 % over 1,000 impressions).

A user is scored by their region's row (all regions when the region is unknown):

    trending(u, i) = ln(1 + velocity_r(i)) - age_h(i) / recency_h - foreign_penalty · foreign(u, i)

The age term is a recency prior (age and ``recency_h`` in hours): every ``recency_h`` of age
costs one unit of log-velocity, so a story 12 h older needs e ≈ 2.7 times the (1 + velocity) to
rank level, and one published a minute ago ranks before old stories whose clicks have faded,
before anyone clicked it. ``foreign`` marks a local article of another region. Features beside
the score: ``trending_velocity`` (own region), ``trending_global`` (all regions),
``trending_ctr``.

It needs no history, so it serves cold users. The catalog and the user table grow in place
(``add_items``, ``set_user_regions``); clicks and impressions stream in through ``observe``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from feedstack.core.errors import InputError
from feedstack.features.definitions import TRENDING_TAU_S, WINDOWS_S, smoothed_ctr
from feedstack.models.candidates.base import Arrays, CandidateSource, IntArray
from feedstack.models.kernels import FloatMatrix

F64Array = npt.NDArray[np.float64]
GLOBAL = -1  # item region of an article meant for every region
UNKNOWN = -1  # user region before a profile event


@dataclass(frozen=True, slots=True)
class Exposures:
    """Events of one kind (clicks or shown items): article index, viewer's region, time (s)."""

    items: IntArray
    regions: IntArray  # UNKNOWN for a viewer without a known region
    times: F64Array

    def between(self, lo_s: float, hi_s: float) -> Exposures:
        """The events at times in [lo_s, hi_s)."""
        keep = (self.times >= lo_s) & (self.times < hi_s)
        return Exposures(self.items[keep], self.regions[keep], self.times[keep])


@dataclass(frozen=True, slots=True)
class TrendingTrainer:
    name: str = "trending"
    velocity_tau_s: float = TRENDING_TAU_S
    ctr_tau_s: float = WINDOWS_S["24h"]
    recency_h: float = 12.0
    foreign_penalty: float = 2.0

    def empty(
        self,
        regions: Sequence[str],
        publish_s: F64Array,
        item_region: IntArray,
        user_region: IntArray,
        as_of_s: float,
    ) -> TrendingSource:
        params = {**asdict(self), "regions": list(regions)}
        del params["name"]
        n = len(publish_s)
        zeros = np.zeros((len(regions) + 1, n))
        return TrendingSource(
            self.name,
            n,
            "",
            np.asarray(publish_s, np.float64),
            np.asarray(item_region, np.int64),
            np.asarray(user_region, np.int64),
            zeros,
            zeros.copy(),
            zeros.copy(),
            as_of_s,
            params,
        )

    def fit(
        self,
        regions: Sequence[str],
        publish_s: F64Array,
        item_region: IntArray,
        user_region: IntArray,
        clicks: Exposures,
        impressions: Exposures,
        as_of_s: float,
    ) -> TrendingSource:
        """The state as of ``as_of_s`` from every click and shown item before it."""
        source = self.empty(regions, publish_s, item_region, user_region, as_of_s)
        source.observe(
            clicks.between(-math.inf, as_of_s), impressions.between(-math.inf, as_of_s), as_of_s
        )
        return source


class TrendingSource(CandidateSource):
    kind: ClassVar[str] = "trending"

    def __init__(
        self,
        name: str,
        n_items: int,
        data_hash: str,
        publish_s: F64Array,
        item_region: IntArray,
        user_region: IntArray,
        velocity: F64Array,
        clicks: F64Array,
        impressions: F64Array,
        as_of_s: float,
        params: Mapping[str, Any],
    ) -> None:
        super().__init__(name, n_items, data_hash)
        self.regions = tuple(str(r) for r in params["regions"])
        self.all_row = len(self.regions)  # the row of every region together
        self.publish_s = publish_s
        self.item_region = item_region
        self.user_region = user_region
        self.velocity = velocity  # [regions + 1, items]
        self.clicks = clicks
        self.impressions = impressions
        self.as_of_s = float(as_of_s)
        self._params = dict(params)
        self.velocity_tau_s = float(params["velocity_tau_s"])
        self.ctr_tau_s = float(params["ctr_tau_s"])
        self.recency_h = float(params["recency_h"])
        self.foreign_penalty = float(params["foreign_penalty"])

    @property
    def feature_names(self) -> tuple[str, ...]:
        n = self.name
        return (n, f"{n}_velocity", f"{n}_global", f"{n}_ctr")

    # ------------------------------------------------------------------------- updates
    def add_items(self, publish_s: F64Array, item_region: IntArray) -> None:
        """Append articles (items n_items, n_items + 1, ...), with no clicks yet."""
        n_new = len(publish_s)
        if n_new == 0:
            return
        self.publish_s = np.concatenate([self.publish_s, np.asarray(publish_s, np.float64)])
        self.item_region = np.concatenate([self.item_region, np.asarray(item_region, np.int64)])
        pad = np.zeros((self.all_row + 1, n_new))
        self.velocity = np.concatenate([self.velocity, pad], axis=1)
        self.clicks = np.concatenate([self.clicks, pad], axis=1)
        self.impressions = np.concatenate([self.impressions, pad], axis=1)
        self.n_items += n_new

    def set_user_regions(self, users: IntArray, regions: IntArray) -> None:
        """Record users' regions (growing the table for new users)."""
        users = np.asarray(users, np.int64)
        if users.size and users.max() >= self.user_region.size:
            grown = np.full(int(users.max()) + 1, UNKNOWN, dtype=np.int64)
            grown[: self.user_region.size] = self.user_region
            self.user_region = grown
        self.user_region[users] = np.asarray(regions, np.int64)

    def advance(self, to_s: float) -> None:
        """Decay every count from its as-of time to ``to_s`` (never backwards)."""
        if to_s <= self.as_of_s:
            return
        dt = to_s - self.as_of_s
        self.velocity *= math.exp(-dt / self.velocity_tau_s)
        fade = math.exp(-dt / self.ctr_tau_s)
        self.clicks *= fade
        self.impressions *= fade
        self.as_of_s = float(to_s)

    def observe(self, clicks: Exposures, shown: Exposures, now_s: float | None = None) -> None:
        """Add clicks and shown items (all at or before ``now_s``, default: the latest of them
        or the current as-of time) and bring the state to ``now_s``."""
        latest = max(
            [self.as_of_s, *(float(e.times.max()) for e in (clicks, shown) if e.times.size)]
        )
        now = latest if now_s is None else float(now_s)
        if latest > now:
            raise InputError(f"{self.name}: an event at {latest} is after now ({now})")
        self.advance(now)
        self._add(self.velocity, clicks, self.velocity_tau_s)
        self._add(self.clicks, clicks, self.ctr_tau_s)
        self._add(self.impressions, shown, self.ctr_tau_s)

    def _add(self, state: F64Array, events: Exposures, tau_s: float) -> None:
        if events.items.size == 0:
            return
        w = np.exp(-(self.as_of_s - events.times) / tau_s)
        known = events.regions >= 0
        np.add.at(state, (events.regions[known], events.items[known]), w[known])
        np.add.at(state[self.all_row], events.items, w)

    # ------------------------------------------------------------------------- scoring
    def rows_of(self, users: IntArray) -> IntArray:
        """The state row of each user: their region, or all regions when unknown."""
        users = np.asarray(users, np.int64)
        inside = (users >= 0) & (users < self.user_region.size)
        region = np.where(inside, self.user_region[np.where(inside, users, 0)], UNKNOWN)
        return np.where(region >= 0, region, self.all_row)

    def feature_scores(self, users: IntArray, history: sp.csr_matrix) -> dict[str, FloatMatrix]:
        self.check(users, history)
        rows = self.rows_of(users)
        velocity = self.velocity[rows]
        age_h = np.maximum(self.as_of_s - self.publish_s, 0.0) / 3600.0
        age_h = np.where(np.isfinite(age_h), age_h, 1e3)  # never published: very old
        foreign = (
            (rows[:, None] != self.all_row)
            & (self.item_region[None, :] != GLOBAL)
            & (self.item_region[None, :] != rows[:, None])
        )
        score = np.log1p(velocity) - age_h[None, :] / self.recency_h
        score -= self.foreign_penalty * foreign
        # smoothed_ctr is written for floats; on arrays it broadcasts.
        clicks: Any = self.clicks[rows]
        shown: Any = self.impressions[rows]
        ctr = smoothed_ctr(clicks, shown)
        glob = np.broadcast_to(self.velocity[self.all_row], velocity.shape)
        f32 = np.float32
        return {
            self.name: score.astype(f32),
            f"{self.name}_velocity": velocity.astype(f32),
            f"{self.name}_global": glob.astype(f32),
            f"{self.name}_ctr": np.asarray(ctr, dtype=f32),
        }

    # ------------------------------------------------------------------------- artifact
    def params(self) -> dict[str, Any]:
        return dict(self._params)

    def arrays(self) -> Arrays:
        return {
            "publish_s": self.publish_s,
            "item_region": self.item_region,
            "user_region": self.user_region,
            "velocity": self.velocity,
            "clicks": self.clicks,
            "impressions": self.impressions,
            "as_of_s": np.asarray([self.as_of_s]),
        }

    @classmethod
    def from_arrays(
        cls, name: str, n_items: int, data_hash: str, params: Mapping[str, Any], arrays: Arrays
    ) -> Self:
        return cls(
            name,
            n_items,
            data_hash,
            arrays["publish_s"],
            arrays["item_region"],
            arrays["user_region"],
            arrays["velocity"],
            arrays["clicks"],
            arrays["impressions"],
            float(arrays["as_of_s"][0]),
            params,
        )
