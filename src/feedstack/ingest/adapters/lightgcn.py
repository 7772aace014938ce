"""The LightGCN/NGCF text format: ``user item item ...`` per line, dense integer ids.

Used by the Gowalla, Yelp2018 and Amazon-Book splits. Ids become ``u<user>`` and ``a<item>``.

The format has no times, so they are synthetic and deterministic (the rule, with T = ``start``):
- every UserProfile and ArticlePublished stub is at T;
- the k-th item on a line (0-based) is clicked at T + (k + 1) s.
So every click comes after its user and article, and the times do not depend on the file order.
Ingest ``test.txt`` with a later ``start`` than ``train.txt`` to keep the benchmark split as a time
split (its stubs are the same events as train's and deduplicate).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from feedstack.core.errors import InputError
from feedstack.ingest.adapters.base import (
    Adapter,
    Options,
    bad,
    check_files,
    event,
    not_utf8,
    option_label,
    option_time,
    read_lines,
)
from feedstack.ingest.adapters.payloads import article_published, click, user_profile
from feedstack.ingest.records import RawRecord

NAME = "lightgcn"
DEFAULT_START = datetime(2020, 1, 1, tzinfo=UTC)


def _records(paths: list[Path], start: datetime, region: str) -> Iterator[RawRecord]:
    users_done: set[str] = set()
    items_done: set[str] = set()
    click_times: list[datetime] = []  # click_times[k] = start + (k + 1) s, shared by every line
    for path in paths:
        for line in read_lines(path):
            if line.text is None:
                yield not_utf8(path, line)
                continue
            tokens = line.text.split()
            wrong = next((t for t in tokens if not (t.isascii() and t.isdigit())), None)
            if wrong is not None:
                field = "user" if wrong is tokens[0] else "item"
                yield bad(path, line, field, f"not a non-negative integer id: {wrong!r}")
                continue
            user, items = tokens[0], tokens[1:]
            uid = f"u{user}"
            if user not in users_done:
                users_done.add(user)
                yield event(
                    path, line.number, user_profile(f"{NAME}:user:{user}", uid, region, start)
                )
            while len(click_times) < len(items):
                click_times.append(start + timedelta(seconds=len(click_times) + 1))
            for k, item in enumerate(items):
                aid = f"a{item}"
                if item not in items_done:
                    items_done.add(item)
                    payload = article_published(
                        f"{NAME}:article:{item}",
                        aid,
                        title=f"item {item}",
                        text="",
                        topic="unknown",
                        region=region,
                        published=start,
                    )
                    yield event(path, line.number, payload)
                payload = click(f"{NAME}:click:{user}:{item}", click_times[k], uid, aid)
                yield event(path, line.number, payload)


def open_lightgcn(paths: list[Path], options: Options) -> Iterator[RawRecord]:
    if not paths:
        raise InputError(f"{NAME}: give at least one file (e.g. train.txt)")
    check_files(paths)
    start = option_time(NAME, options, "start", DEFAULT_START)
    region = option_label(NAME, options, "region", "global")
    return _records(paths, start, region)


ADAPTER = Adapter(
    name=NAME,
    summary="LightGCN text format (user item item ...): clicks at synthetic times",
    options={
        "start": "ISO time T: stubs at T, a line's k-th item clicked at T + (k+1) s "
        "(default 2020-01-01T00:00:00+00:00)",
        "region": "region of every user and article (default global)",
    },
    open=open_lightgcn,
)
