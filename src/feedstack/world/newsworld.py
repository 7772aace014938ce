"""NewsWorld: the ground truth of a simulated world, answered from its config alone.

Online A/B tests, canaries and the live demo ask the world how good a served list is, or how a
user reacts to it, at any time, without replaying the event log. Everything here is a pure function
of ``WorldConfig`` (users, articles, interests, relevance), except ``respond``, which samples from
the caller's generator.

    world = NewsWorld(WorldConfig(users=1000, articles=500, seed=7))
    at = world.config.start + timedelta(hours=9)
    items = world.live_articles(at)[:10]
    world.true_relevance("u3", items, at)    # array of P(click | examined)
    world.expected_clicks("u3", items, at)   # sum_p examination(p) * relevance
    world.respond("u3", items, at, "req-1", np.random.default_rng(0))  # [Click, Dwell, Hide...]

Ids are strings: users "u0".."u{users-1}", articles "a0".."a{articles-1}" in publish order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from feedstack.core.errors import InputError
from feedstack.core.events import Click, Dwell, Event, Hide
from feedstack.world.catalog import Catalog, article_id
from feedstack.world.clickmodel import ClickModel
from feedstack.world.config import WorldConfig
from feedstack.world.population import Population, user_id
from feedstack.world.timeline import US_PER_DAY, from_us, to_us

F64 = npt.NDArray[np.float64]

_CACHE_LIMIT = 65_536  # (user, day) interest vectors kept; a live demo asks about few users


@dataclass(frozen=True)
class ArticleInfo:
    """What the world publishes about an article (its quality stays hidden)."""

    article_id: str
    topic: str
    region: str
    publish_time: datetime
    title: str
    text: str


class NewsWorld:
    def __init__(self, config: WorldConfig) -> None:
        self.config = config
        self.population = Population.build(config)
        self.catalog = Catalog.build(config)
        self.click_model = ClickModel(config, self.catalog)
        self._start_us = to_us(config.start)
        self._interests: dict[tuple[int, int], F64] = {}

    # --- users -----------------------------------------------------------------------------
    def user_ids(self) -> list[str]:
        return [user_id(i) for i in range(self.population.size)]

    def user_region(self, uid: str) -> str:
        return self.config.region_names[int(self.population.region[self._user(uid)])]

    def user_regions(self) -> list[str]:
        """Region of every user, in user-id order."""
        names = self.config.region_names
        return [names[r] for r in self.population.region.tolist()]

    def signup_time(self, uid: str) -> datetime:
        return from_us(int(self.population.signup_us[self._user(uid)]))

    # --- articles --------------------------------------------------------------------------
    def article_ids(self) -> list[str]:
        return [article_id(i) for i in range(self.catalog.size)]

    def article(self, aid: str) -> ArticleInfo:
        i, c = self._article(aid), self.catalog
        return ArticleInfo(
            aid,
            self.config.topics[int(c.topic[i])],
            c.region_name(i),
            from_us(int(c.publish_us[i])),
            c.titles[i],
            c.texts[i],
        )

    def live_articles(self, at: datetime) -> list[str]:
        """Articles published in (at - max_age_h, at], oldest first."""
        lo, hi = self.catalog.live_range(to_us(at))
        return [article_id(i) for i in range(lo, hi)]

    # --- ground truth ----------------------------------------------------------------------
    def day(self, at: datetime) -> int:
        """Interest day of a time: whole days since the start, 0 before it."""
        return max(0, (to_us(at) - self._start_us) // US_PER_DAY)

    def interests(self, uid: str, at: datetime) -> F64:
        """The user's topic interest distribution at ``at`` (indexed like config.topics)."""
        return self._interest_row(self._user(uid), self.day(at)).copy()

    def examination(self, positions: npt.ArrayLike) -> F64:
        """P(a user examines position p), 0-based: 1 / (1 + p) ** eta."""
        return self.click_model.examination(positions)

    def true_relevance(self, uid: str, article_ids: Sequence[str], at: datetime) -> F64:
        """P(click | examined) of each article for the user at ``at`` (0 before publication)."""
        u = self._user(uid)
        items = np.array([[self._article(a) for a in article_ids]], dtype=np.int64)
        if items.shape[1] == 0:
            return np.zeros(0)
        rel = self.click_model.relevance(
            self._interest_row(u, self.day(at))[None, :],
            self.population.region[[u]].astype(np.int64),
            items,
            np.array([to_us(at)], dtype=np.int64),
        )
        out: F64 = rel[0]
        return out

    def expected_clicks(self, uid: str, ranked_article_ids: Sequence[str], at: datetime) -> float:
        """Expected clicks on the list, position 0 first: sum_p examination(p) * relevance."""
        rel = self.true_relevance(uid, ranked_article_ids, at)
        return float(np.dot(self.examination(np.arange(rel.shape[0])), rel))

    def expected_clicks_many(
        self,
        uids: Sequence[str],
        ranked_lists: Sequence[Sequence[str]],
        times_s: Sequence[float],
    ) -> F64:
        """``expected_clicks`` of many served lists (times in Unix seconds): the ground-truth
        oracle offline evaluation and experiments score a policy with."""
        return np.array(
            [
                self.expected_clicks(u, items, datetime.fromtimestamp(t, UTC))
                for u, items, t in zip(uids, ranked_lists, times_s, strict=True)
            ]
        )

    def respond(
        self,
        uid: str,
        ranked_article_ids: Sequence[str],
        at: datetime,
        request_id: str,
        rng: np.random.Generator,
    ) -> list[Event]:
        """Sampled reactions to a list shown at ``at``: Click, Dwell and Hide events, time-ordered.

        The Impression is the server's to log. Event ids are ``{request_id}:c{p}`` (click),
        ``:d{p}`` (dwell), ``:h{p}`` (hide), so replaying a request never duplicates events.
        """
        rel = self.true_relevance(uid, ranked_article_ids, at)[None, :]
        if rel.shape[1] == 0:
            return []
        fb = self.click_model.sample(rel, np.ones(rel.shape, dtype=bool), rng)
        at_us, base = to_us(at), _id_base(request_id)
        timed: list[tuple[int, Event]] = []
        for p, aid in enumerate(ranked_article_ids):
            act_us = at_us + int(fb.action_offset_us[0, p])
            if fb.click[0, p]:
                done_us = at_us + int(fb.dwell_offset_us[0, p])
                click = Click(
                    event_id=f"{base}:c{p}",
                    event_time=from_us(act_us),
                    user_id=uid,
                    article_id=aid,
                    request_id=request_id,
                    position=p,
                )
                dwell = Dwell(
                    event_id=f"{base}:d{p}",
                    event_time=from_us(done_us),
                    user_id=uid,
                    article_id=aid,
                    dwell_ms=int(fb.dwell_ms[0, p]),
                    request_id=request_id,
                )
                timed += [(act_us, click), (done_us, dwell)]
            elif fb.hide[0, p]:
                hide = Hide(
                    event_id=f"{base}:h{p}",
                    event_time=from_us(act_us),
                    user_id=uid,
                    article_id=aid,
                    request_id=request_id,
                )
                timed.append((act_us, hide))
        timed.sort(key=lambda te: te[0])  # stable: a click stays before its own dwell
        return [e for _, e in timed]

    # --- ids ---------------------------------------------------------------------------------
    def _user(self, uid: str) -> int:
        return _parse_id(uid, "u", self.population.size, "user")

    def _article(self, aid: str) -> int:
        return _parse_id(aid, "a", self.catalog.size, "article")

    def _interest_row(self, u: int, day: int) -> F64:
        key = (u, day)
        row = self._interests.get(key)
        if row is None:
            if len(self._interests) >= _CACHE_LIMIT:
                self._interests.clear()
            row = self.population.interests(np.array([u], dtype=np.int64), day)[0]
            self._interests[key] = row
        return row


def _parse_id(value: str, prefix: str, size: int, what: str) -> int:
    digits = value[1:]
    if value[:1] == prefix and digits.isdigit() and digits.isascii():
        i = int(digits)
        if i < size and str(i) == digits:
            return i
    raise InputError(f"unknown {what} id {value!r} (this world has {prefix}0..{prefix}{size - 1})")


def _id_base(request_id: str) -> str:
    # Event ids are at most 128 characters; a long request id is replaced by its digest.
    if len(request_id) <= 120:
        return request_id
    return "r" + hashlib.sha256(request_id.encode()).hexdigest()[:40]
