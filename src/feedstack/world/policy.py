"""The logging policy: the randomized, non-personalized ranker that produced the logged lists.

Per region and time step it builds a candidate pool: the ``pool_size`` live articles of the region
or "global" with the best score ``log1p(popularity) - age_h / recency_scale_h``, where popularity
is an exponentially decayed click count (half-life ``popularity_half_life_h``, updated from the
world's own clicks, so popular items snowball as in a real feed). Each shown list is a
Plackett-Luce sample of k pool items with weights ``exp(score / temperature)``, drawn with the
Gumbel top-k trick (Kool et al., ICML 2019). Every pool item thus has a positive chance at every
position: the variety a learner needs to separate position bias from relevance and to debias the
log. Propensities are not logged (the Impression schema has no field for them) but follow from the
log itself: popularity is a decayed count of logged clicks, age comes from publish times.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from feedstack.world.catalog import GLOBAL, Catalog
from feedstack.world.config import WorldConfig
from feedstack.world.timeline import US_PER_H

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


class LoggingPolicy:
    def __init__(self, config: WorldConfig, catalog: Catalog) -> None:
        self.params = config.logger
        self.k = config.clicks.k
        self.catalog = catalog
        self.n_regions = len(config.population.regions)
        self.popularity: F64 = np.zeros(catalog.size)
        step_h = config.step_minutes / 60
        self._decay = 0.5 ** (step_h / self.params.popularity_half_life_h)

    def pools(self, at_us: int) -> list[tuple[I64, F64]]:
        """Per region: (article rows, scores) of the candidate pool at ``at_us``."""
        c = self.catalog
        lo, hi = c.live_range(at_us)
        rows = np.arange(lo, hi, dtype=np.int64)
        age_h = (at_us - c.publish_us[lo:hi]) / US_PER_H
        score = np.log1p(self.popularity[lo:hi]) - age_h / self.params.recency_scale_h
        out = []
        for r in range(self.n_regions):
            keep = (c.region[lo:hi] == r) | (c.region[lo:hi] == GLOBAL)
            cand, s = rows[keep], score[keep]
            if cand.shape[0] > self.params.pool_size:
                top = np.argpartition(-s, self.params.pool_size - 1)[: self.params.pool_size]
                top.sort()  # pool order independent of argpartition internals
                cand, s = cand[top], s[top]
            out.append((cand, s))
        return out

    def slates(self, pool: I64, scores: F64, n: int, rng: np.random.Generator) -> I64:
        """n sampled lists, (n, k), best first; -1 pads when the pool has fewer than k items."""
        out = np.full((n, self.k), -1, dtype=np.int64)
        size = pool.shape[0]
        if n == 0 or size == 0:
            return out
        keys = scores[None, :] / self.params.temperature + rng.gumbel(size=(n, size))
        width = min(self.k, size)
        if width < size:
            top = np.argpartition(-keys, width - 1, axis=1)[:, :width]
        else:
            top = np.broadcast_to(np.arange(size), (n, size)).copy()
        order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1, kind="stable")
        out[:, :width] = pool[np.take_along_axis(top, order, axis=1)]
        return out

    def record(self, clicked: I64) -> None:
        """Decay popularity by one step and add this step's clicks (used from the next step)."""
        self.popularity *= self._decay
        self.popularity += np.bincount(clicked, minlength=self.popularity.shape[0])
