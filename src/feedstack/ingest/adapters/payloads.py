"""Event-shaped dicts, so each adapter states only where the values come from.

The field sets match ``feedstack.core.events``; validation stays in the ingest pipeline.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


def user_profile(event_id: str, user_id: str, region: str, signup: datetime) -> dict[str, Any]:
    return {
        "type": "user_profile",
        "event_id": event_id,
        "event_time": signup,
        "user_id": user_id,
        "region": region,
        "signup_time": signup,
    }


def article_published(
    event_id: str,
    article_id: str,
    *,
    title: str,
    text: str,
    topic: str,
    region: str,
    published: datetime,
) -> dict[str, Any]:
    return {
        "type": "article_published",
        "event_id": event_id,
        "event_time": published,
        "article_id": article_id,
        "title": title,
        "text": text,
        "topic": topic,
        "region": region,
        "publish_time": published,
    }


def impression(
    event_id: str, at: datetime, *, request_id: str, user_id: str, items: list[str], model: str
) -> dict[str, Any]:
    return {
        "type": "impression",
        "event_id": event_id,
        "event_time": at,
        "request_id": request_id,
        "user_id": user_id,
        "item_ids": items,
        "model_version": model,
    }


def click(
    event_id: str,
    at: datetime,
    user_id: str,
    article_id: str,
    *,
    request_id: str | None = None,
    position: int | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "click",
        "event_id": event_id,
        "event_time": at,
        "user_id": user_id,
        "article_id": article_id,
    }
    if request_id is not None:
        out["request_id"] = request_id
    if position is not None:
        out["position"] = position
    return out
