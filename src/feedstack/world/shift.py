"""Incidents injected into a simulation: a topic surge and a shift of a feature's distribution.

A ``Shift`` is an overlay on a world, not part of its config: ``Simulation(world, shift=...)``
plays the same users, articles and random draws, and from ``at`` on changes what they do, so the
monitor's drift detectors have a known injection time to be measured against. Without a shift
the simulation is untouched (every seed generates what it always did).

- topic surge: everyone's interests become ``(1 - surge_share) * interests + surge_share *
  onehot(surge_topic)``: a share of every user's attention goes to the topic, whatever they read
  before (a breaking story, a final everyone watches), so its articles become more relevant to
  everyone and the clicked topic mix moves at once. Mixing rather than multiplying matters:
  interests are concentrated (Dirichlet 0.3), and a multiple of a near-zero interest stays near
  zero.
- dwell shift: dwell times are multiplied by ``dwell_factor`` (a client release that reports
  dwell differently, or reading behaviour that changed): the numeric feature ``dwell_ms`` shifts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feedstack.core.errors import InputError
from feedstack.world.config import WorldConfig

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Shift:
    at_us: int  # simulated time the incident starts (microseconds since the epoch)
    surge_topic: str | None = None
    surge_share: float = 0.0
    dwell_factor: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.surge_share < 1 or self.dwell_factor <= 0:
            raise InputError(
                f"shift: surge_share must be in [0, 1) and dwell_factor > 0, got "
                f"{self.surge_share}, {self.dwell_factor}"
            )

    def topic_index(self, config: WorldConfig) -> int | None:
        if self.surge_topic is None:
            return None
        if self.surge_topic not in config.topics:
            raise InputError(
                f"shift: surge_topic {self.surge_topic!r} is not a topic of this world "
                f"({', '.join(config.topics)})"
            )
        return config.topics.index(self.surge_topic)

    def interests(self, interests: F64, config: WorldConfig) -> F64:
        """Interest rows (n, topics) with the surge applied, still summing to 1."""
        t = self.topic_index(config)
        if t is None or self.surge_share == 0.0:
            return interests
        out: F64 = interests * (1.0 - self.surge_share)
        out[:, t] += self.surge_share
        return out

    def shifted_config(self, config: WorldConfig) -> WorldConfig:
        """The config whose click model produces the shifted dwell times."""
        clicks = config.clicks.model_copy(
            update={"dwell_median_ms": config.clicks.dwell_median_ms * self.dwell_factor}
        )
        return config.model_copy(update={"clicks": clicks})
