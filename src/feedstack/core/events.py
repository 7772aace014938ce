"""The event schema, version 1: a closed set of event types.

Every event carries ``event_id`` (the dedupe key), ``event_time`` (timezone-aware; freshness and
point-in-time joins use it), ``type`` (the discriminator) and ``schema_version``.

    article_published  article_id, title, text, topic, region, publish_time
    user_profile       user_id, region, signup_time
    impression         request_id, user_id, item_ids (ordered, position = index), model_version,
                       experiment?, arm? (the A/B test the request was served under, and its arm)
    click              user_id, article_id, request_id?, position?
    dwell              user_id, article_id, dwell_ms, request_id?
    hide               user_id, article_id, request_id?

Validation is strict about shape (no unknown or missing fields, no unknown types, no naive times,
ids printable and at most 128 characters: core/ids.py);
limits that depend on the spec (text size, clock skew) are checked by the ingest pipeline.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

from feedstack.core.ids import ID_PATTERN, MAX_ID_CHARS, MAX_LABEL_CHARS, TEXT_PATTERN

SCHEMA_VERSION = 1

# Ids and labels are printable and bounded (core/ids.py: no NUL, no control characters); free
# text may hold newlines but never NUL.
Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS, pattern=ID_PATTERN)]
Label = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_LABEL_CHARS, pattern=ID_PATTERN)
]
Text = Annotated[str, StringConstraints(pattern=TEXT_PATTERN)]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: Id
    event_time: AwareDatetime
    schema_version: Literal[1] = 1


class ArticlePublished(_Event):
    type: Literal["article_published"] = "article_published"
    article_id: Id
    title: Text
    text: Text
    topic: Label
    region: Label
    publish_time: AwareDatetime


class UserProfile(_Event):
    type: Literal["user_profile"] = "user_profile"
    user_id: Id
    region: Label
    signup_time: AwareDatetime


class Impression(_Event):
    type: Literal["impression"] = "impression"
    request_id: Id
    user_id: Id
    item_ids: list[Id] = Field(min_length=1)
    model_version: Label
    # Set when the request was served under a running A/B test (registry/experiment.py): the
    # experiment's analysis reads its exposures from these. Left out of the JSON when unset, so
    # the canonical bytes of every other impression stay what they were.
    experiment: Label | None = Field(None, exclude_if=lambda v: v is None)
    arm: Label | None = Field(None, exclude_if=lambda v: v is None)


class Click(_Event):
    type: Literal["click"] = "click"
    user_id: Id
    article_id: Id
    request_id: Id | None = None
    position: int | None = Field(None, ge=0)


class Dwell(_Event):
    type: Literal["dwell"] = "dwell"
    user_id: Id
    article_id: Id
    dwell_ms: int = Field(ge=0, le=86_400_000)
    request_id: Id | None = None


class Hide(_Event):
    type: Literal["hide"] = "hide"
    user_id: Id
    article_id: Id
    request_id: Id | None = None


Event = Annotated[
    ArticlePublished | UserProfile | Impression | Click | Dwell | Hide,
    Field(discriminator="type"),
]
EVENT_TYPES: dict[str, type[_Event]] = {
    "article_published": ArticlePublished,
    "user_profile": UserProfile,
    "impression": Impression,
    "click": Click,
    "dwell": Dwell,
    "hide": Hide,
}

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event_json(raw: bytes | str) -> Event:
    """Validate one JSON document into an event (raises pydantic.ValidationError)."""
    return EVENT_ADAPTER.validate_json(raw)


def parse_event(obj: Any) -> Event:
    """Validate one Python mapping into an event (raises pydantic.ValidationError)."""
    return EVENT_ADAPTER.validate_python(obj)


def event_to_json(event: Event) -> bytes:
    """The canonical JSON form stored in the event log."""
    return EVENT_ADAPTER.dump_json(event)


def event_to_dict(event: Event) -> dict[str, Any]:
    """JSON-compatible dict (times as ISO strings)."""
    out: dict[str, Any] = EVENT_ADAPTER.dump_python(event, mode="json")
    return out


def event_time_us(t: datetime) -> int:
    """Microseconds since the Unix epoch (used as the sortable time column in stores)."""
    return int(t.timestamp() * 1_000_000)
