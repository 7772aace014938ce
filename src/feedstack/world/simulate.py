"""The simulation: step through the world's time and yield its events in time order.

Each step (``step_minutes``, 15 by default) is vectorized over all users:

1. announce users who signed up and articles published in the step (those that existed before the
   start are announced at the start, with their true earlier signup/publish time);
2. draw each user's feed opens, Poisson(sessions_per_day * diurnal(local hour) * step length);
3. for each open, the logging policy samples a list of k live articles from its region's pool;
4. the click model samples clicks, dwell and hides from the true relevance at the open's time;
5. clicks feed the policy's popularity for the next step.

Reactions can outlast their step (reading takes minutes), so events at or after the step's end are
carried into the next step and merged there: the output is ordered by event time (ties keep
generation order), and only O(events per step) is ever held in memory. Each step draws from its
own generator, seeded by (seed, step), so the result is a pure function of the config.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from feedstack.world.batch import (
    ARTICLE,
    CLICK,
    DWELL,
    HIDE,
    IMPRESSION,
    PROFILE,
    EventBatch,
)
from feedstack.world.clickmodel import ClickModel
from feedstack.world.newsworld import NewsWorld
from feedstack.world.policy import LoggingPolicy
from feedstack.world.population import DriftState
from feedstack.world.shift import Shift
from feedstack.world.timeline import US_PER_DAY, US_PER_H, to_us

_SIMULATION_STREAM = 4


class Simulation:
    def __init__(self, world: NewsWorld, shift: Shift | None = None) -> None:
        """``shift``: an incident injected from its time on (world/shift.py); None plays the
        world as its config says."""
        self.world = world
        self.shift = shift
        self._shifted_clicks = (
            None if shift is None else ClickModel(shift.shifted_config(world.config), world.catalog)
        )
        cfg = world.config
        self.start_us = to_us(cfg.start)
        self.end_us = self.start_us + int(cfg.days * US_PER_DAY)
        self.step_us = cfg.step_minutes * 60 * 1_000_000
        self.n_steps = math.ceil((self.end_us - self.start_us) / self.step_us)
        self.requests = 0  # shown lists so far; request ids are w{seed}-r{n}

    def batches(self) -> Iterator[EventBatch]:
        """One time-ordered batch per step; the last one also flushes the carried reactions."""
        w, cfg = self.world, self.world.config
        pop, cat = w.population, w.catalog
        k = cfg.clicks.k
        user_at = np.maximum(pop.signup_us, self.start_us)
        user_order = np.argsort(user_at, kind="stable")
        user_at_sorted = user_at[user_order]
        article_at = np.maximum(cat.publish_us, self.start_us)  # ascending, like publish_us
        drift = DriftState(pop)
        policy = LoggingPolicy(cfg, cat)
        diurnal = np.array(cfg.population.session_diurnal)
        diurnal = diurnal / diurnal.mean()
        offsets = np.array([r.utc_offset_h for r in cfg.population.regions])
        carry = EventBatch.of(PROFILE, np.zeros(0, dtype=np.int64), k=k)
        for s in range(self.n_steps):
            t0 = self.start_us + s * self.step_us
            t1 = min(t0 + self.step_us, self.end_us)
            rng = np.random.default_rng([cfg.seed, _SIMULATION_STREAM, s])
            drift.advance_to((t0 - self.start_us) // US_PER_DAY)
            lo, hi = np.searchsorted(user_at_sorted, [t0, t1], side="left")
            users = user_order[lo:hi]
            profiles = EventBatch.of(PROFILE, user_at[users], k=k, user=users)
            lo, hi = np.searchsorted(article_at, [t0, t1], side="left")
            rows = np.arange(lo, hi, dtype=np.int64)
            articles = EventBatch.of(ARTICLE, article_at[rows], k=k, article=rows)
            # Feed opens: expected count per user in this step, zero before signup.
            hour_factor = diurnal[((t0 // US_PER_H) + offsets) % 24]
            lam = pop.sessions_per_day * hour_factor[pop.region] * ((t1 - t0) / US_PER_DAY)
            counts = rng.poisson(np.where(pop.signup_us <= t0, lam, 0.0))
            sessions = self._sessions(policy, drift, counts, t0, t1, rng)
            batch = EventBatch.concat([carry, profiles, articles, sessions])
            head, carry = batch.split_sorted(t1 if s < self.n_steps - 1 else np.iinfo(np.int64).max)
            yield head

    def _sessions(
        self,
        policy: LoggingPolicy,
        drift: DriftState,
        counts: npt.NDArray[np.int64],
        t0: int,
        t1: int,
        rng: np.random.Generator,
    ) -> EventBatch:
        """Impressions and the reactions to them for the feed opens of one step."""
        w = self.world
        k = w.config.clicks.k
        users = np.repeat(np.arange(counts.shape[0], dtype=np.int64), counts)
        times = rng.integers(t0, t1, size=users.shape[0], dtype=np.int64)
        order = np.argsort(times, kind="stable")
        users, times = users[order], times[order]
        region = w.population.region[users].astype(np.int64)
        slates = np.full((users.shape[0], k), -1, dtype=np.int64)
        for r, (pool, scores) in enumerate(policy.pools(t0)):
            mine = np.flatnonzero(region == r)
            slates[mine] = policy.slates(pool, scores, mine.shape[0], rng)
        # An open with no live article shows nothing and logs nothing.
        served = slates[:, 0] >= 0
        users, times, region, slates = users[served], times[served], region[served], slates[served]
        shown = slates >= 0
        interests, clicks = drift.interests(users), w.click_model
        if self.shift is not None and self._shifted_clicks is not None and t0 >= self.shift.at_us:
            interests = self.shift.interests(interests, w.config)
            clicks = self._shifted_clicks
        rel = clicks.relevance(interests, region, slates, times)
        fb = clicks.sample(rel, shown, rng)
        policy.record(slates[fb.click])
        request = self.requests + np.arange(users.shape[0], dtype=np.int64)
        self.requests += users.shape[0]
        ci, cp = np.nonzero(fb.click)
        hi, hp = np.nonzero(fb.hide)
        parts = [
            EventBatch.of(IMPRESSION, times, k=k, user=users, request=request, items=slates),
            EventBatch.of(
                CLICK,
                times[ci] + fb.action_offset_us[ci, cp],
                k=k,
                user=users[ci],
                article=slates[ci, cp],
                request=request[ci],
                position=cp,
            ),
            EventBatch.of(
                DWELL,
                times[ci] + fb.dwell_offset_us[ci, cp],
                k=k,
                user=users[ci],
                article=slates[ci, cp],
                request=request[ci],
                dwell_ms=fb.dwell_ms[ci, cp],
            ),
            EventBatch.of(
                HIDE,
                times[hi] + fb.action_offset_us[hi, hp],
                k=k,
                user=users[hi],
                article=slates[hi, hp],
                request=request[hi],
                position=hp,  # not part of the Hide event; kept for the tally
            ),
        ]
        return EventBatch.concat(parts)
