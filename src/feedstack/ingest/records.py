"""RawRecord: what a reader or a dataset adapter hands to the ingest pipeline.

A record is either JSON text (``payload: bytes``), an event-shaped mapping (``payload: dict``), or
already known bad (``error`` set: the reader could not even make a payload of it). Every record goes
through the same validation, so an adapter's bad line lands in the dead-letter store like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RawRecord:
    source: str  # file path, or "api"
    line: int  # 1-based line/row number in the source (0 when not applicable)
    payload: bytes | dict[str, Any] | None
    raw: str | None = None  # text to keep in the dead-letter store when payload is not bytes
    error: tuple[str, str] | None = None  # (field, reason) when the reader already rejected it

    def raw_text(self) -> str:
        if self.raw is not None:
            return self.raw
        if isinstance(self.payload, bytes):
            return self.payload.decode("utf-8", "backslashreplace")
        return repr(self.payload)
