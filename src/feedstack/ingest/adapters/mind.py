"""MIND (Microsoft News Dataset): ``behaviors.tsv`` plus the ``news.tsv`` beside it.

behaviors.tsv: impression_id, user_id, time (``11/15/2019 8:55:22 AM``, UTC), history
(``N1 N2 ...``, clicks before the log), impressions (``N3-1 N4-0 ...``; the test split has no
labels). news.tsv: news_id, category, subcategory, title, abstract, url, title_entities,
abstract_entities.

Per behaviors line: one Impression (request_id = impression_id, or ``<split>-<impression_id>`` with
the ``split`` option, because every MIND split numbers its impressions from 1 and ids would
collide in one log), and a Click at the impression time, with request_id and position (0-based
index in the list), for every ``-1`` label. The history becomes Clicks without request id at the
user's first impression time - 1 s, once per user/article.

Times, all computed in a first pass so that nothing is used before it exists:
- signup_time = the user's first impression time - 1 s (the time of the history clicks);
- publish_time = the first time the article is seen: in an impression, or as a history click;
  articles never seen get ``UNSEEN_PUBLISH_TIME``, the start of the MIND log (12 Oct 2019).
Articles referenced but missing from news.tsv get a stub (title = id, topic ``unknown``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from feedstack.core.errors import InputError
from feedstack.ingest.adapters.base import (
    Adapter,
    Line,
    Options,
    bad,
    check_files,
    event,
    option_label,
    read_lines,
)
from feedstack.ingest.adapters.payloads import article_published, click, impression, user_profile
from feedstack.ingest.records import RawRecord

NAME = "mind"
MODEL_VERSION = "mind"
UNSEEN_PUBLISH_TIME = datetime(2019, 10, 12, tzinfo=UTC)
_HISTORY_LEAD = timedelta(seconds=1)
_LABELLED = re.compile(r"\s*\S+-[01](?:\s+\S+-[01])*\s*")


@dataclass(frozen=True, slots=True)
class Behavior:
    impression_id: str
    user_id: str
    time: datetime
    history: list[str]
    items: list[str]
    labels: list[int | None]  # None: the test split carries no label


@dataclass(frozen=True, slots=True)
class News:
    news_id: str
    category: str
    title: str
    abstract: str


def parse_time(text: str) -> datetime:
    """``11/15/2019 8:55:22 AM`` as UTC, or ValueError. (1.6 us, strptime 5 us: 2 calls a line.)"""
    date, clock, half = text.split(" ")
    month, day, year = date.split("/")
    hour, minute, second = (int(x) for x in clock.split(":"))
    if not 1 <= hour <= 12 or half not in ("AM", "PM"):
        raise ValueError(text)
    hour = hour % 12 + (12 if half == "PM" else 0)
    return datetime(int(year), int(month), int(day), hour, minute, second, tzinfo=UTC)


def _impressions(shown: str) -> tuple[list[str], list[int | None]]:
    """(news ids, labels); ValueError says what is wrong."""
    tokens = shown.split()
    if not tokens:
        raise ValueError("no items")
    labels: list[int | None]
    if _LABELLED.fullmatch(shown):  # one C-speed check instead of a Python loop per item
        labels = [1 if t[-1] == "1" else 0 for t in tokens]
        return [t[:-2] for t in tokens], labels
    if "-" not in shown:  # the test split: ids without labels
        labels = [None] * len(tokens)
        return tokens, labels
    wrong = next(t for t in tokens if not _LABELLED.fullmatch(t))
    raise ValueError(f"expected <news_id>-<0|1> on every item, got {wrong!r}")


def parse_behavior(text: str) -> Behavior | tuple[str, str]:
    f = text.split("\t")
    if len(f) != 5:
        return "line", f"expected 5 tab-separated fields, got {len(f)}"
    impression_id, user_id, time_text, history, shown = (x.strip() for x in f)
    if not impression_id:
        return "impression_id", "empty"
    if not user_id:
        return "user_id", "empty"
    try:
        at = parse_time(time_text)
    except ValueError:
        return "time", f"not like 11/15/2019 8:55:22 AM: {time_text!r}"
    try:
        items, labels = _impressions(shown)
    except ValueError as exc:
        return "impressions", str(exc)
    return Behavior(impression_id, user_id, at, history.split(), items, labels)


def parse_news(text: str) -> News | tuple[str, str]:
    f = text.split("\t")
    if len(f) != 8:
        return "line", f"expected 8 tab-separated fields, got {len(f)}"
    if not f[0].strip():
        return "news_id", "empty"
    if not 1 <= len(f[1].strip()) <= 64:
        return "category", f"must be 1 to 64 characters, got {f[1]!r}"
    return News(f[0].strip(), f[1].strip(), f[3], f[4])


def _behaviors(paths: list[Path]) -> Iterator[tuple[Path, Line, Behavior | tuple[str, str]]]:
    for path in paths:
        for line in read_lines(path):
            if line.text is None:
                yield path, line, ("line", "not valid UTF-8")
            else:
                yield path, line, parse_behavior(line.text)


def _earliest(first: dict[str, datetime], key: str, at: datetime) -> None:
    seen = first.get(key)
    if seen is None or at < seen:
        first[key] = at


def _first_times(paths: list[Path]) -> tuple[dict[str, datetime], dict[str, datetime]]:
    """(user -> first impression time, article -> first time seen) over every good line."""
    users: dict[str, datetime] = {}
    articles: dict[str, datetime] = {}
    bad_lines: set[tuple[Path, int]] = set()
    for path, line, b in _behaviors(paths):
        if not isinstance(b, Behavior):
            bad_lines.add((path, line.number))
            continue
        _earliest(users, b.user_id, b.time)
        for item in b.items:
            _earliest(articles, item, b.time)
    # History clicks happen at the user's first impression - 1 s, known only after the pass
    # above; a second, light pass (no time or label parsing) beats keeping every history in memory.
    for path in paths:
        for line in read_lines(path):
            if line.text is None or (path, line.number) in bad_lines:
                continue
            _, user, _, history, _ = line.text.split("\t")
            at = users[user.strip()] - _HISTORY_LEAD
            for item in history.split():
                _earliest(articles, item, at)
    return users, articles


def load_news(path: Path) -> Iterator[tuple[Line, News | tuple[str, str]]]:
    for line in read_lines(path):
        yield line, ("line", "not valid UTF-8") if line.text is None else parse_news(line.text)


def _article(news: News, region: str, published: datetime) -> dict[str, Any]:
    return article_published(
        f"{NAME}:article:{news.news_id}",
        news.news_id,
        title=news.title,
        text=news.abstract,
        topic=news.category,
        region=region,
        published=published,
    )


@dataclass
class _Emitter:
    """Turns one good behaviors line into payloads, remembering what was already emitted."""

    user_first: dict[str, datetime]
    article_first: dict[str, datetime]
    articles_done: set[str]
    region: str
    prefix: str
    # user -> hash of the history already emitted: O(users) memory, not O(users x history).
    # Python's hash is enough: it is compared within this run only, never stored.
    history_done: dict[str, int] = field(default_factory=dict)

    def payloads(self, b: Behavior) -> Iterator[dict[str, Any]]:
        user = b.user_id
        history_at = self.user_first[user] - _HISTORY_LEAD
        if user not in self.history_done:  # every user seen gets an entry below
            yield user_profile(f"{NAME}:user:{user}", user, self.region, history_at)
        for item in (*b.history, *b.items):
            if item not in self.articles_done:
                self.articles_done.add(item)
                stub = News(item, "unknown", item, "")
                yield _article(stub, self.region, self.article_first[item])
        digest = hash(tuple(b.history))
        if self.history_done.get(user) != digest:
            self.history_done[user] = digest
            for item in b.history:
                yield click(f"{NAME}:history:{user}:{item}", history_at, user, item)
        rid = self.prefix + b.impression_id
        yield impression(
            f"{NAME}:impression:{rid}",
            b.time,
            request_id=rid,
            user_id=user,
            items=b.items,
            model=MODEL_VERSION,
        )
        for pos, (item, label) in enumerate(zip(b.items, b.labels, strict=True)):
            if label == 1:
                event_id = f"{NAME}:click:{rid}:{pos}"
                yield click(event_id, b.time, user, item, request_id=rid, position=pos)


def _records(
    paths: list[Path], news_paths: list[Path], split: str, region: str
) -> Iterator[RawRecord]:
    user_first, article_first = _first_times(paths)
    articles_done: set[str] = set()
    for path in news_paths:
        for line, n in load_news(path):
            if not isinstance(n, News):
                yield bad(path, line, *n)
            elif n.news_id not in articles_done:
                articles_done.add(n.news_id)
                at = article_first.get(n.news_id, UNSEEN_PUBLISH_TIME)
                yield event(path, line.number, _article(n, region, at))
    prefix = f"{split}-" if split else ""
    emitter = _Emitter(user_first, article_first, articles_done, region, prefix)
    for path, line, b in _behaviors(paths):
        if not isinstance(b, Behavior):
            yield bad(path, line, *b)
            continue
        for payload in emitter.payloads(b):
            yield event(path, line.number, payload)


def open_mind(paths: list[Path], options: Options) -> Iterator[RawRecord]:
    if not paths:
        raise InputError(f"{NAME}: give at least one behaviors.tsv")
    check_files(paths)
    news_paths = list(dict.fromkeys(p.with_name("news.tsv") for p in paths))
    for news in news_paths:
        if not news.is_file():
            raise InputError(f"{news}: no such file (MIND needs news.tsv beside behaviors.tsv)")
    check_files(news_paths)
    split = options.get("split", "")
    if len(split) > 32 or any(c.isspace() for c in split):
        raise InputError(f"{NAME}: option split={split!r} must be at most 32 characters, no spaces")
    region = option_label(NAME, options, "region", "global")
    return _records(paths, news_paths, split, region)


ADAPTER = Adapter(
    name=NAME,
    summary="MIND behaviors.tsv (+ news.tsv beside it): impressions, clicks, history, articles",
    options={
        "split": "request-id prefix, e.g. dev (default none): MIND splits reuse impression ids",
        "region": "region of every user and article (default global)",
    },
    open=open_mind,
)
