"""The log replayed forward in time: at ``now_s`` every stateful part has seen exactly the events
before ``now_s``, never one after.

Parts: the feature aggregator (ranking context), the co-visitation and trending sources (streamed
state), the click history. The content source is fitted once on the texts published before
training starts; articles published later are embedded from their own text (ContentSource
.add_items), which reads no click and no later article, so embedding them up front changes no
score before their publication, and unpublished articles are never candidates (``live``).

Training rows and evaluation requests are read between ``advance`` calls: a request at t is served
from the state at the start of its bucket (``bucket_s``), as a server whose candidate sources and
features are refreshed every bucket would.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from feedstack.features.aggregator import FeatureAggregator
from feedstack.features.context import Context
from feedstack.models.candidates.base import CandidateSource
from feedstack.models.candidates.content import ContentSource
from feedstack.models.candidates.covisit import CovisitSource, CovisitTrainer, pairs
from feedstack.models.candidates.trending import Exposures, TrendingSource, TrendingTrainer
from feedstack.train.history import ClickHistory
from feedstack.train.newslog import NewsLog

IntArray = npt.NDArray[np.int64]
F64Array = npt.NDArray[np.float64]


def _by_time(e: Exposures) -> Exposures:
    order = np.argsort(e.times, kind="stable")
    return Exposures(e.items[order], e.regions[order], e.times[order])


class Replay:
    def __init__(
        self,
        log: NewsLog,
        content: ContentSource,
        covisit: CovisitTrainer,
        trending: TrendingTrainer,
        static: Sequence[CandidateSource] = (),
    ) -> None:
        self.log = log
        self.static = list(static)  # fitted once (train/source_audit.py); nothing to advance
        self.now_s = log.start_s
        self.agg = FeatureAggregator()
        self.content = content
        c = log.clicks
        self.covisit: CovisitSource = covisit.empty(log.n_items, self.now_s)
        self._pairs = pairs(c.user, c.item, c.time_s, covisit.window_s, covisit.max_lag)
        self.trending: TrendingSource = trending.empty(
            log.regions, log.publish_s, log.article_region, log.user_region, self.now_s
        )
        self._clicks = _by_time(log.click_exposures())
        self._shown = _by_time(log.shown_exposures())
        self.history = ClickHistory.build(c.user, c.item, c.time_s, log.n_items)
        self._event = 0  # next row of log.events to apply

    @property
    def sources(self) -> list[CandidateSource]:
        return [self.covisit, self.content, self.trending, *self.static]

    def advance(self, to_s: float) -> None:
        """Apply every event with a time in [now_s, to_s)."""
        if to_s <= self.now_s:
            return
        lo, hi = self.now_s, to_s
        end = int(np.searchsorted(self.log.event_s, hi, side="left"))
        if end > self._event:
            self.agg.apply(self.log.events.slice(self._event, end - self._event).to_pylist())
            self._event = end
        clicks, shown = self._clicks.between(lo, hi), self._shown.between(lo, hi)
        self.covisit.add_clicks(clicks.items, clicks.times, hi)
        left, right, at = self._pairs
        window = slice(*np.searchsorted(at, [lo, hi], side="left"))
        self.covisit.add_pairs(left[window], right[window], at[window], hi)
        self.trending.observe(clicks, shown, hi)
        self.now_s = hi

    def live(self, max_age_s: float) -> npt.NDArray[np.bool_]:
        """Articles a feed may show now: published, and less than ``max_age_s`` old."""
        age = self.now_s - self.log.publish_s
        return np.asarray((age >= 0) & (age < max_age_s), dtype=bool)

    def histories(self, users: IntArray) -> sp.csr_matrix:
        return self.history.rows(users, np.full(users.size, self.now_s))

    def context(self, users: IntArray) -> Context:
        return Context.read(self.agg, self.now_s, self.log.article_ids, self.log.user_ids, users)
