"""Simulated feed traffic on the NewsWorld, served by ranking policies that know the world only
through noise: the test bench of canaries and A/B tests, whose true effect the world can tell.

A request is a user (drawn in proportion to their sessions per day) opening the feed at a time;
the candidate pool is the ``pool_size`` newest live articles of the user's region and global ones.
A policy ranks the pool by a noisy copy of the true relevance (``logit(rel) + N(0, noise_sd)``);
the ``shuffled`` policy ranks at random (a ranker whose scores were shuffled). The world's
position-based click model gives the expected clicks of a served list (ground truth) and samples
the clicks and dwell a user makes on it. Latency, errors and fallbacks are drawn per policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from feedstack.registry.assignment import bucket
from feedstack.world.catalog import GLOBAL
from feedstack.world.newsworld import NewsWorld
from feedstack.world.timeline import to_us

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class RankingPolicy:
    name: str
    noise_sd: float = 1.5  # sd of the score noise around logit(true relevance)
    shuffled: bool = False  # rank at random
    latency_median_ms: float = 40.0
    latency_sigma: float = 0.3  # lognormal: p99 = median * exp(2.33 sigma) ~ 2x median
    error_rate: float = 0.001
    fallback_rate: float = 0.005


# The reference policies: today's ranker, a better one, and a broken one (shuffled scores).
CHAMPION = RankingPolicy("champion", noise_sd=1.5)
BETTER = RankingPolicy("better", noise_sd=0.8)
SHUFFLED = RankingPolicy("shuffled", shuffled=True)


@dataclass(frozen=True)
class Requests:
    users: I64  # user rows
    at_us: I64
    relevance: F64  # (n, pool) true relevance of the pool items; 0 for empty slots
    valid: B  # (n, pool)


@dataclass(frozen=True)
class Served:
    """What one policy did on a batch of requests."""

    expected_clicks: F64  # (n,) ground truth: sum_p examination(p) * relevance
    clicks: I64  # (n,) sampled
    impressions: I64  # (n,)
    dwell_ms: I64  # (n,) total dwell of the request's clicks
    latency_ms: F64
    error: B
    fallback: B


@dataclass
class Traffic:
    world: NewsWorld
    start: datetime
    pool_size: int = 100
    scale: float = 1.0  # multiplies the world's mean request rate
    _weights: F64 = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rate = self.world.population.sessions_per_day
        self._weights = rate / rate.sum()

    @property
    def requests_per_day(self) -> float:
        return float(self.world.population.sessions_per_day.sum()) * self.scale

    @property
    def requests_per_minute(self) -> float:
        return self.requests_per_day / 1440.0

    def user_ids(self) -> list[str]:
        return self.world.user_ids()

    def buckets(self, salt: str) -> F64:
        """Every user's assignment position under ``salt`` (registry/assignment.py)."""
        return np.array([bucket(u, salt) for u in self.user_ids()])

    def draw(self, n: int, at: datetime, rng: np.random.Generator) -> Requests:
        """n requests at ``at`` (the minute they fall in; relevance moves slowly)."""
        world, cat = self.world, self.world.catalog
        users = rng.choice(self._weights.shape[0], size=n, p=self._weights).astype(np.int64)
        at_us = to_us(at)
        lo, hi = cat.live_range(at_us)
        region = world.population.region[users].astype(np.int64)
        n_regions = len(world.config.population.regions)
        pools = np.full((n_regions, self.pool_size), -1, dtype=np.int64)
        live = np.arange(lo, hi, dtype=np.int64)
        for r in range(n_regions):
            mine = live[(cat.region[lo:hi] == r) | (cat.region[lo:hi] == GLOBAL)]
            newest = mine[-self.pool_size :]
            pools[r, : newest.shape[0]] = newest
        items = pools[region]
        interests = world.population.interests(users, world.day(at))
        times = np.full(n, at_us, dtype=np.int64)
        rel = world.click_model.relevance(interests, region, items, times)
        return Requests(users, times, rel, items >= 0)

    def serve(self, req: Requests, policy: RankingPolicy, rng: np.random.Generator) -> Served:
        n, pool = req.relevance.shape
        k = min(self.world.config.clicks.k, pool)
        if policy.shuffled:
            scores = rng.random((n, pool))
        else:
            rel = np.clip(req.relevance, 1e-9, 1 - 1e-9)
            scores = np.log(rel / (1 - rel)) + policy.noise_sd * rng.standard_normal((n, pool))
        scores = np.where(req.valid, scores, -np.inf)
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        slate_rel = np.take_along_axis(req.relevance, top, axis=1)
        shown = np.take_along_axis(req.valid, top, axis=1)
        exam = self.world.examination(np.arange(k))
        fb = self.world.click_model.sample(slate_rel, shown, rng)
        latency = policy.latency_median_ms * np.exp(policy.latency_sigma * rng.standard_normal(n))
        return Served(
            expected_clicks=(slate_rel * exam[None, :]).sum(axis=1),
            clicks=fb.click.sum(axis=1).astype(np.int64),
            impressions=shown.sum(axis=1).astype(np.int64),
            dwell_ms=np.where(fb.click, fb.dwell_ms, 0).sum(axis=1).astype(np.int64),
            latency_ms=latency,
            error=np.less(rng.random(n), policy.error_rate),
            fallback=np.less(rng.random(n), policy.fallback_rate),
        )

    def minutes(self, count: int, rng: np.random.Generator) -> list[tuple[datetime, int]]:
        """(minute start, number of requests) for ``count`` simulated minutes (Poisson)."""
        sizes = rng.poisson(self.requests_per_minute, size=count)
        return [(self.start + timedelta(minutes=i), int(s)) for i, s in enumerate(sizes)]

    def true_lift(
        self, a: RankingPolicy, b: RankingPolicy, minutes: int, per_minute: int, seed: int
    ) -> float:
        """The world's CTR lift of b over a: expected clicks per impression of both policies on
        the same requests (``per_minute`` in each of ``minutes`` minutes from the start), with no
        click noise: the estimand of an A/B test over that period."""
        rng = np.random.default_rng(seed)
        clicks_a = impressions_a = clicks_b = impressions_b = 0.0
        for minute in range(minutes):
            req = self.draw(per_minute, self.start + timedelta(minutes=minute), rng)
            sa, sb = self.serve(req, a, rng), self.serve(req, b, rng)
            clicks_a += float(sa.expected_clicks.sum())
            impressions_a += float(sa.impressions.sum())
            clicks_b += float(sb.expected_clicks.sum())
            impressions_b += float(sb.impressions.sum())
        return (clicks_b / impressions_b) / (clicks_a / impressions_a) - 1.0
