"""Known-answer events for tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from feedstack.core.events import Event, parse_event
from feedstack.world import WorldConfig

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def click(n: int, *, user: str = "u1", article: str = "a1", seconds: float = 0) -> dict[str, Any]:
    return {
        "type": "click",
        "event_id": f"c{n}",
        "event_time": (T0 + timedelta(seconds=seconds or n)).isoformat(),
        "user_id": user,
        "article_id": article,
    }


def impression(n: int, items: list[str] | None = None, *, day: int = 0) -> dict[str, Any]:
    return {
        "type": "impression",
        "event_id": f"i{n}",
        "event_time": (T0 + timedelta(days=day, seconds=n)).isoformat(),
        "request_id": f"r{n}",
        "user_id": f"u{n % 7}",
        "item_ids": items or [f"a{j}" for j in range(5)],
        "model_version": "m0",
    }


def article(n: int, *, title: str = "Title", text: str = "Body") -> dict[str, Any]:
    t = (T0 + timedelta(seconds=n)).isoformat()
    return {
        "type": "article_published",
        "event_id": f"p{n}",
        "event_time": t,
        "article_id": f"a{n}",
        "title": title,
        "text": text,
        "topic": "tech",
        "region": "eu",
        "publish_time": t,
    }


def events(dicts: list[dict[str, Any]]) -> list[Event]:
    return [parse_event(d) for d in dicts]


def jsonl(dicts: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(d) + b"\n" for d in dicts)


def mixed(n: int) -> list[dict[str, Any]]:
    """n valid events of several types over two days."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            out.append(impression(i, day=i % 2))
        elif kind == 1:
            out.append(click(i, user=f"u{i % 5}", article=f"a{i % 4}"))
        else:
            out.append(article(i))
    return out


def world_project(root: Path, config: WorldConfig) -> Path:
    """A simulated world in ``root/world`` ingested into a fresh project ``root/p``."""
    from feedstack.core.spec import load_spec, write_default_spec
    from feedstack.ingest.pipeline import Ingestor
    from feedstack.ingest.readers import read_jsonl
    from feedstack.world import write_world

    write_world(config, root / "world")
    write_default_spec(root / "p")
    ing = Ingestor.from_spec(load_spec(root / "p"), root / "p")
    ing.ingest(read_jsonl(root / "world" / "events.jsonl"))
    ing.close()
    return root / "p"
