"""The users of the world: region, activity level, signup time and drifting topic interests.

User ``u{i}`` is row i of every array. Interests on day d (days counted from the world's start,
clamped at 0) are ``softmax(log_interest0[i] + W_d[i])`` where the drift W follows a mean-reverting
random walk, ``W_0 = 0, W_d = persistence * W_{d-1} + step * eps_d``, and eps_d comes from
counter-based noise keyed by (seed, user, day). So interests are a pure function of the config:
the simulation advances W for everyone one day at a time (``DriftState``) and the ground-truth API
recomputes it for a few users (``Population.interests``) with the same arithmetic, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feedstack.world.config import WorldConfig
from feedstack.world.noise import stream_key, uniform_matrix
from feedstack.world.timeline import US_PER_DAY, to_us

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_POPULATION_STREAM = 1
_DRIFT_STREAM = 3
_SQRT12 = float(np.sqrt(12.0))  # scales U(-0.5, 0.5) to unit variance
_DRIFT_SLICE = 65_536


def user_id(i: int) -> str:
    return f"u{i}"


@dataclass(frozen=True, eq=False)
class Population:
    """Arrays over users; see the module docstring for the interest model."""

    config: WorldConfig
    region: npt.NDArray[np.int8]  # index into config.population.regions
    sessions_per_day: F64  # expected feed opens per day
    log_interest0: F64  # (users, topics): log of the Dirichlet draw at the start
    signup_us: I64

    @classmethod
    def build(cls, config: WorldConfig) -> Population:
        p = config.population
        n, n_topics = config.users, len(config.topics)
        rng = np.random.default_rng([config.seed, _POPULATION_STREAM])
        shares = np.array([r.share for r in p.regions])
        region = rng.choice(len(shares), size=n, p=shares / shares.sum()).astype(np.int8)
        # Lognormal with mean sessions_per_day: exp(sigma Z - sigma^2 / 2) has mean 1.
        sigma = p.activity_sigma
        rate = p.sessions_per_day * np.exp(sigma * rng.standard_normal(n) - sigma * sigma / 2)
        theta = rng.dirichlet(np.full(n_topics, p.interest_concentration), size=n)
        log0 = np.log(np.maximum(theta, 1e-12))
        start_us, span_us = to_us(config.start), int(config.days * US_PER_DAY)
        new = rng.random(n) < p.new_user_share
        back_us = (rng.random(n) * p.signup_history_days * US_PER_DAY).astype(np.int64)
        inside_us = (rng.random(n) * span_us).astype(np.int64)
        signup = np.where(new, start_us + inside_us, start_us - 1 - back_us)
        return cls(config, region, rate, log0, signup.astype(np.int64))

    @property
    def size(self) -> int:
        return int(self.region.shape[0])

    def drift(self, users: I64, day: int) -> F64:
        """W_day for the given users, (len(users), topics); day <= 0 means no drift yet."""
        w = np.zeros((len(users), len(self.config.topics)))
        for d in range(1, day + 1):
            w = drift_step(self.config, w, users, d)
        return w

    def interests(self, users: I64, day: int) -> F64:
        """Topic interest distributions of the given users on ``day`` (rows sum to 1)."""
        return interests_from(self.log_interest0[users], self.drift(users, day))


def drift_step(config: WorldConfig, w: F64, users: I64, day: int) -> F64:
    """W_day from W_{day-1}: the one place the drift arithmetic lives (shared by both paths)."""
    p = config.population
    u = uniform_matrix(stream_key(config.seed, _DRIFT_STREAM, day), users, w.shape[1])
    out: F64 = p.drift_persistence * w + p.drift_step * ((u - 0.5) * _SQRT12)
    return out


def interests_from(log_interest0: F64, w: F64) -> F64:
    z = log_interest0 + w
    z = np.exp(z - z.max(axis=1, keepdims=True))
    out: F64 = z / z.sum(axis=1, keepdims=True)
    return out


class DriftState:
    """W for every user, advanced one day at a time by the simulation."""

    def __init__(self, population: Population) -> None:
        self._population = population
        self._users = np.arange(population.size, dtype=np.int64)
        self.day = 0
        self.w: F64 = np.zeros((population.size, len(population.config.topics)))

    def advance_to(self, day: int) -> None:
        cfg = self._population.config
        while self.day < day:
            self.day += 1
            # In slices of users: the noise temporaries of a 1M-user step would take ~0.5 GB.
            for lo in range(0, self.w.shape[0], _DRIFT_SLICE):
                hi = lo + _DRIFT_SLICE
                self.w[lo:hi] = drift_step(cfg, self.w[lo:hi], self._users[lo:hi], self.day)

    def interests(self, users: I64) -> F64:
        return interests_from(self._population.log_interest0[users], self.w[users])
