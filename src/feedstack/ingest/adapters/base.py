"""The dataset-adapter contract, and what every adapter shares: file checks, lines, options, ids.

An adapter turns one public dataset format into ``RawRecord``s of feedstack events. The contract:

- ``open(paths, options)`` checks every path (and every side file it needs) *before* returning, and
  raises ``InputError`` naming the path or the option; then it returns a lazy iterator.
- It never validates events and never raises on a bad line: a line it cannot parse becomes a
  record with ``error=(field, reason)`` and ``raw=<the line>``; the pipeline dead-letters it.
- Event ids are derived from the source fields only, and every ``user_profile`` or
  ``article_published`` is yielded once, before its first use, with times computed from the data,
  so ingesting the same dataset twice appends nothing new.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from feedstack.core.errors import InputError
from feedstack.ingest.records import RawRecord

Options = Mapping[str, str]
Opener = Callable[[list[Path], Options], Iterator[RawRecord]]

_SNIFF_BYTES = 8192


@dataclass(frozen=True, slots=True)
class Adapter:
    name: str
    summary: str
    # option name -> one-line help (with the default); a name ending in "." is a prefix ("map.")
    options: Mapping[str, str]
    open: Opener

    def check_options(self, options: Options) -> None:
        prefixes = tuple(k for k in self.options if k.endswith("."))
        for key in options:
            if key in self.options or (key.startswith(prefixes) and key not in prefixes):
                continue
            valid = ", ".join(k + "*" if k.endswith(".") else k for k in sorted(self.options))
            raise InputError(f"{self.name}: unknown option {key!r}; valid options: {valid}")


def check_files(paths: list[Path], *, text: bool = True) -> None:
    """Raise InputError for the first path that is missing, unreadable, or (``text``) binary."""
    for path in paths:
        if not path.is_file():
            what = "is a directory" if path.is_dir() else "no such file"
            raise InputError(f"{path}: {what}")
        try:
            with path.open("rb") as f:
                head = f.read(_SNIFF_BYTES)
        except OSError as exc:
            raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
        # A NUL byte never occurs in the UTF-8 text formats we read; it means a binary file
        # (a zip not yet extracted, a Parquet file passed to a text adapter).
        if text and b"\x00" in head:
            raise InputError(f"{path}: looks binary (NUL byte in the first {_SNIFF_BYTES} bytes)")


@dataclass(frozen=True, slots=True)
class Line:
    number: int  # 1-based
    text: str | None  # None when the bytes are not valid in the file's encoding
    raw: str  # what to keep in the dead-letter store


def read_lines(path: Path, *, fallback_encoding: str | None = None) -> Iterator[Line]:
    """Non-blank lines without their line ending; one undecodable line never stops the file."""
    with path.open("rb") as f:
        for number, data in enumerate(f, 1):
            data = data.rstrip(b"\r\n")
            if number == 1:
                data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 BOM is not part of the data
            if not data.strip():
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                if fallback_encoding is None:
                    yield Line(number, None, data.decode("utf-8", "backslashreplace"))
                    continue
                text = data.decode(fallback_encoding, "replace")
            yield Line(number, text, text)


def bad(path: Path, line: Line, field: str, reason: str) -> RawRecord:
    return RawRecord(
        source=str(path), line=line.number, payload=None, raw=line.raw, error=(field, reason)
    )


def not_utf8(path: Path, line: Line) -> RawRecord:
    return bad(path, line, "line", "not valid UTF-8")


def event(path: Path, line: int, payload: dict[str, Any]) -> RawRecord:
    return RawRecord(source=str(path), line=line, payload=payload)


def stable_hash(*parts: object) -> str:
    """16 hex chars of blake2b over the parts: an id that only depends on the source fields."""
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        h.update(str(part).encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")  # unit separator, so ("ab", "c") and ("a", "bc") differ
    return h.hexdigest()


def from_unix(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def option_time(adapter: str, options: Options, key: str, default: datetime) -> datetime:
    value = options.get(key)
    if value is None:
        return default
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"{adapter}: option {key}={value!r} is not an ISO-8601 time") from None
    if parsed.tzinfo is None:
        raise InputError(f"{adapter}: option {key}={value!r} needs a UTC offset, e.g. +00:00")
    return parsed


def option_float(adapter: str, options: Options, key: str, default: float) -> float:
    value = options.get(key)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        raise InputError(f"{adapter}: option {key}={value!r} is not a number") from None


def option_label(adapter: str, options: Options, key: str, default: str) -> str:
    value = options.get(key, default)
    if not 1 <= len(value) <= 64:
        raise InputError(f"{adapter}: option {key}={value!r} must be 1 to 64 characters")
    return value
