"""The world's ground truth (NewsWorld): known answers and invariants of the click model."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from pydantic import ValidationError

from feedstack.core.errors import InputError
from feedstack.core.events import Click, Dwell, Hide, event_to_json, parse_event_json
from feedstack.world import NewsWorld, WorldConfig
from feedstack.world.catalog import GLOBAL
from feedstack.world.population import DriftState


@pytest.fixture(scope="module")
def world() -> NewsWorld:
    return NewsWorld(WorldConfig(users=300, articles=2000, days=1, seed=3))


def test_same_config_same_world() -> None:
    a = NewsWorld(WorldConfig(users=50, articles=40, seed=9))
    b = NewsWorld(WorldConfig(users=50, articles=40, seed=9))
    c = NewsWorld(WorldConfig(users=50, articles=40, seed=10))
    assert a.user_regions() == b.user_regions()
    assert a.catalog.titles == b.catalog.titles
    assert np.array_equal(a.catalog.publish_us, b.catalog.publish_us)
    assert a.catalog.titles != c.catalog.titles


def test_examination_known_values() -> None:
    w = NewsWorld(WorldConfig(users=5, articles=5))
    assert np.allclose(w.examination([0, 1, 3, 9]), [1.0, 1 / 2, 1 / 4, 1 / 10])  # eta = 1


def test_expected_clicks_is_examination_weighted_relevance(world: NewsWorld) -> None:
    at = world.config.start + timedelta(hours=12)
    items = world.live_articles(at)[-10:]
    rel = world.true_relevance("u7", items, at)
    want = sum(rel[p] / (1 + p) for p in range(10))
    assert world.expected_clicks("u7", items, at) == pytest.approx(want, rel=1e-12)
    assert world.expected_clicks("u7", [], at) == 0.0


def test_mean_sampled_clicks_matches_expected_clicks(world: NewsWorld) -> None:
    at = world.config.start + timedelta(hours=12)
    uid = "u11"
    top = int(world.interests(uid, at).argmax())
    live = world.live_articles(at)
    # A list with some relevant items, so clicks are not all near zero.
    favored = [a for a in live if world.catalog.topic[int(a[1:])] == top][-5:]
    items = favored + [a for a in live if a not in favored][-5:]
    rel = world.true_relevance(uid, items, at)
    p = world.examination(np.arange(len(items))) * rel
    rng, n = np.random.default_rng(1), 4000
    clicks = [
        sum(isinstance(e, Click) for e in world.respond(uid, items, at, "r", rng)) for _ in range(n)
    ]
    se = float(np.sqrt((p * (1 - p)).sum() / n))
    assert abs(np.mean(clicks) - world.expected_clicks(uid, items, at)) < 4 * se


def test_relevance_is_monotone_in_topic_interest(world: NewsWorld) -> None:
    """Same global article, different users: relevance orders users by interest in its topic."""
    at = world.config.start + timedelta(hours=12)
    live = world.live_articles(at)
    aid = next(a for a in live if world.catalog.region[int(a[1:])] == GLOBAL)
    topic = int(world.catalog.topic[int(aid[1:])])
    users = world.user_ids()[:100]
    interest = np.array([world.interests(u, at)[topic] for u in users])
    rel = np.array([world.true_relevance(u, [aid], at)[0] for u in users])
    order = np.argsort(interest)
    assert np.all(np.diff(rel[order]) >= 0)
    assert rel.max() > 3 * rel.min()


def test_relevance_favors_the_users_top_topic(world: NewsWorld) -> None:
    at = world.config.start + timedelta(hours=12)
    live = world.live_articles(at)
    rows = np.array([int(a[1:]) for a in live])
    topics, is_global = world.catalog.topic[rows], world.catalog.region[rows] == GLOBAL
    for uid in world.user_ids()[:30]:
        top = int(world.interests(uid, at).argmax())
        rel = world.true_relevance(uid, live, at)
        assert rel[(topics == top) & is_global].mean() > rel[(topics != top) & is_global].mean()


def test_freshness_halves_after_one_half_life(world: NewsWorld) -> None:
    at = world.config.start + timedelta(hours=1)
    aid = world.live_articles(at)[-1]
    half_life = float(world.catalog.half_life_h[int(aid[1:])])
    later = at + timedelta(hours=half_life)  # same day: interests unchanged
    now_rel = world.true_relevance("u1", [aid], at)[0]
    assert world.true_relevance("u1", [aid], later)[0] == pytest.approx(now_rel / 2, rel=1e-9)


def test_no_relevance_before_publication(world: NewsWorld) -> None:
    last = world.article_ids()[-1]
    before = world.article(last).publish_time - timedelta(seconds=1)
    assert world.true_relevance("u1", [last], before)[0] == 0.0
    assert last not in world.live_articles(before)


def test_drift_is_slow_and_accumulates(world: NewsWorld) -> None:
    users = np.arange(200, dtype=np.int64)
    day0, day1, day30 = (world.population.interests(users, d) for d in (0, 1, 30))
    step = np.abs(day1 - day0).sum(axis=1)
    assert step.mean() < 0.2  # L1 distance between topic distributions, at most 2
    assert np.abs(day30 - day0).sum(axis=1).mean() > 2 * step.mean()
    assert (day0.argmax(axis=1) == day1.argmax(axis=1)).mean() > 0.8


def test_drift_state_equals_recomputed_interests(world: NewsWorld) -> None:
    """The simulation's incremental drift and the API's from-scratch drift agree exactly."""
    state = DriftState(world.population)
    state.advance_to(4)
    users = np.array([0, 5, 299], dtype=np.int64)
    assert np.array_equal(state.interests(users), world.population.interests(users, 4))


def test_respond_events_are_valid_and_ordered(world: NewsWorld) -> None:
    at = world.config.start + timedelta(hours=20)
    items = world.live_articles(at)[-10:]
    rng = np.random.default_rng(5)
    events = [e for i in range(300) for e in world.respond("u2", items, at, f"req-{i}", rng)]
    assert any(isinstance(e, Click) for e in events) and any(isinstance(e, Dwell) for e in events)
    assert any(isinstance(e, Hide) for e in events)
    for e in events:
        assert parse_event_json(event_to_json(e)) == e
        assert e.event_time > at
        assert e.article_id in items
    for i in range(300):
        times = [e.event_time for e in events if e.request_id == f"req-{i}"]
        assert times == sorted(times)
    again = world.respond("u2", items, at, "req-0", np.random.default_rng(5))
    assert again == [e for e in events if e.request_id == "req-0"]


def test_ids_and_articles(world: NewsWorld) -> None:
    assert world.user_ids()[:2] == ["u0", "u1"]
    assert world.user_region("u0") in world.config.region_names
    info = world.article("a0")
    assert info.topic in world.config.topics and info.title and info.text
    for bad in ("u300", "x1", "u01", "u-1", ""):
        with pytest.raises(InputError):
            world.true_relevance(bad, ["a0"], world.config.start)
    with pytest.raises(InputError):
        world.article("a2000")


def test_config_rejects_inconsistent_values() -> None:
    with pytest.raises(ValidationError):
        WorldConfig(users=-1)
    with pytest.raises(ValidationError):
        WorldConfig(step_minutes=7)
    with pytest.raises(ValidationError):
        WorldConfig(topics=("a", "a"))
