"""Validation: a RawRecord becomes an Event, or a Rejection naming the field and the reason.

Shape is the schema's job (core/events.py); limits that come from the spec (clock skew, text and
line size, list length) are checked here, with the spec's key in the message.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from pydantic import ValidationError

from feedstack.core.clock import Clock
from feedstack.core.events import EVENT_ADAPTER, ArticlePublished, Event, Impression
from feedstack.core.ids import id_problem
from feedstack.core.spec import Ingest
from feedstack.ingest.limits import depth_problem
from feedstack.ingest.records import RawRecord
from feedstack.storage.deadletter import Rejection

_TYPE_TAGS = {"article_published", "user_profile", "impression", "click", "dwell", "hide"}


def _describe(err: ValidationError) -> tuple[str, str]:
    """The first error as (field, reason); pydantic's loc starts with the union tag: drop it."""
    first = err.errors(include_url=False)[0]
    loc = [str(p) for p in first["loc"]]
    if loc and loc[0] in _TYPE_TAGS:
        loc = loc[1:]
    kind = first["type"]
    if kind == "json_invalid":
        return "<record>", f"invalid JSON: {first['msg'].removeprefix('Invalid JSON: ')}"
    if kind == "union_tag_invalid":
        return "type", f"unknown event type {first['input'].get('type')!r}" if isinstance(
            first["input"], dict
        ) else "unknown event type"
    if kind == "union_tag_not_found":
        return "type", "missing (every event needs a type)"
    if kind == "model_type" or kind == "model_attributes_type":
        return "<record>", "expected a JSON object"
    field = ".".join(loc) or "<record>"
    msg = first["msg"]
    if kind == "string_pattern_mismatch":
        value = first.get("input")
        msg = (id_problem(value) if field not in ("title", "text") else None) or (
            "contains NUL (U+0000)" if isinstance(value, str) and "\x00" in value else msg
        )
    elif kind == "extra_forbidden":
        msg = "unknown field"
    elif kind == "missing":
        msg = "required field missing"
    elif "input" in first and kind not in ("missing",):
        shown = repr(first["input"])
        msg = f"{msg} (got {shown[:80]})"
    extra = len(err.errors()) - 1
    if extra:
        msg += f" (+{extra} more)"
    return field, msg


class Validator:
    """Turns raw records into events. JSON input is validated in strict mode (no type coercion:
    ``"dwell_ms": "12"`` is rejected) and kept byte for byte as the stored payload; mappings from
    CSV or Parquet are validated in lax mode (CSV has only strings) and serialized canonically."""

    def __init__(
        self,
        limits: Ingest,
        clock: Clock,
        max_future_s: float | None = None,
        future_key: str = "ingest.max_future_skew_s",
    ) -> None:
        """``clock`` is the time events may not run ahead of by more than ``max_future_s``
        (default ``ingest.max_future_skew_s``); a server whose clock follows the log passes its
        serving clock and the spec key of its own bound (``future_key`` names it in messages)."""
        self.limits = limits
        self.clock = clock
        self.future_s = limits.max_future_skew_s if max_future_s is None else max_future_s
        self.future_key = future_key
        self._max_future = timedelta(seconds=self.future_s)

    def check(self, rec: RawRecord) -> Event | Rejection:
        """One record (the API's single-event path); same rules as ``check_batch``."""
        events, _, rejections = self.check_batch([rec])
        return events[0] if events else rejections[0]

    def check_batch(
        self, records: Iterable[RawRecord]
    ) -> tuple[list[Event], list[bytes], list[Rejection]]:
        """Valid events with their stored payloads, and the rejections, in input order."""
        now = self.clock.now()
        horizon = now + self._max_future
        max_line = self.limits.max_line_bytes
        max_depth = self.limits.max_json_depth
        validate_json = EVENT_ADAPTER.validate_json
        validate_python = EVENT_ADAPTER.validate_python
        dump = EVENT_ADAPTER.dump_json
        events: list[Event] = []
        payloads: list[bytes] = []
        rejections: list[Rejection] = []
        for rec in records:
            payload = rec.payload
            try:
                if rec.error is not None:
                    rejections.append(self._reject(rec, *rec.error))
                    continue
                if isinstance(payload, bytes):
                    if len(payload) > max_line:
                        rejections.append(
                            self._reject(
                                rec,
                                "<record>",
                                f"{len(payload)} bytes exceeds ingest.max_line_bytes={max_line}",
                            )
                        )
                        continue
                    deep = depth_problem(payload, max_depth)
                    if deep is not None:
                        rejections.append(self._reject(rec, "<record>", deep))
                        continue
                    event = validate_json(payload, strict=True)
                    stored = payload
                elif isinstance(payload, dict):
                    event = validate_python(payload)
                    stored = dump(event)
                else:
                    rejections.append(self._reject(rec, "<record>", "empty record"))
                    continue
            except ValidationError as err:
                rejections.append(self._reject(rec, *_describe(err)))
                continue
            problem = self._limits(event, now, horizon)
            if problem is not None:
                rejections.append(self._reject(rec, *problem))
                continue
            events.append(event)
            payloads.append(stored)
        return events, payloads, rejections

    def _limits(self, event: Event, now: datetime, horizon: datetime) -> tuple[str, str] | None:
        lim = self.limits
        if event.event_time > horizon:
            ahead = (event.event_time - now).total_seconds()
            return (
                "event_time",
                f"{event.event_time.isoformat()} is {ahead:.0f} s in the future "
                f"({self.future_key}={self.future_s:g})",
            )
        if isinstance(event, ArticlePublished):
            if len(event.title) > lim.max_title_chars:
                return (
                    "title",
                    f"{len(event.title)} chars exceeds "
                    f"ingest.max_title_chars={lim.max_title_chars}",
                )
            if len(event.text) > lim.max_text_chars:
                return (
                    "text",
                    f"{len(event.text)} chars exceeds ingest.max_text_chars={lim.max_text_chars}",
                )
        elif isinstance(event, Impression) and len(event.item_ids) > lim.max_items_per_impression:
            return (
                "item_ids",
                f"{len(event.item_ids)} items exceeds ingest.max_items_per_impression="
                f"{lim.max_items_per_impression}",
            )
        return None

    @staticmethod
    def _reject(rec: RawRecord, field: str, reason: str) -> Rejection:
        return Rejection(rec.source, rec.line, field, reason, rec.raw_text())
