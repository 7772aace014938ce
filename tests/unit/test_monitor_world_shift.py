"""The world's injected shift: absent or not yet started, the simulation is unchanged."""

from __future__ import annotations

from dataclasses import fields
from datetime import timedelta

import numpy as np
import pytest

from feedstack.core.errors import InputError
from feedstack.world import NewsWorld, WorldConfig
from feedstack.world.shift import Shift
from feedstack.world.simulate import Simulation
from feedstack.world.timeline import to_us

CFG = WorldConfig(users=300, articles=100, days=0.05, seed=3)


def _events(shift: Shift | None) -> list[np.ndarray]:
    world = NewsWorld(CFG)
    return [getattr(b, f.name) for b in Simulation(world, shift).batches() for f in fields(b)]


def test_a_shift_after_the_end_changes_nothing() -> None:
    late = Shift(to_us(CFG.end + timedelta(hours=1)), "sports", 0.5, 3.0)
    for a, b in zip(_events(None), _events(late), strict=True):
        assert np.array_equal(a, b)


def test_a_shift_from_the_start_changes_clicks_and_dwell() -> None:
    now = Shift(to_us(CFG.start), "sports", 0.5, 3.0)
    assert any(not np.array_equal(a, b) for a, b in zip(_events(None), _events(now), strict=True))


def test_surge_keeps_interests_a_distribution() -> None:
    rng = np.random.default_rng(0)
    rows = rng.dirichlet(np.full(len(CFG.topics), 0.3), size=5)
    out = Shift(0, "sports", 0.5).interests(rows, CFG)
    assert np.allclose(out.sum(axis=1), 1.0)
    assert (out[:, CFG.topics.index("sports")] >= 0.5).all()


def test_bad_shift_names_the_field() -> None:
    with pytest.raises(InputError, match="surge_topic 'nope'"):
        Shift(0, "nope", 0.5).interests(np.ones((1, len(CFG.topics))), CFG)
    with pytest.raises(InputError, match="surge_share"):
        Shift(0, "sports", 1.5)
