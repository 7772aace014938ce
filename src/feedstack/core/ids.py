"""What an id may be: one rule for events, feed requests and stored records.

An id (event, user, article, request) is 1 to ``MAX_ID_CHARS`` characters with no control
character: none of C0 (U+0000-U+001F, so no NUL, tab or newline), DEL, C1 (U+007F-U+009F) or the
Unicode line and paragraph separators (U+2028, U+2029). Every store can hold such ids, every
encoding can frame them (the candidate cache joins ids with NUL, logs and CSV split on newlines),
and they print as what they are. Labels (topic, region, model version) follow the same rule with
``MAX_LABEL_CHARS``; free text (titles, bodies) may hold newlines and tabs, never NUL.

``ID_PATTERN`` is written for both regex engines it meets: pydantic's (Rust ``regex``) in the
event schema and Python's ``re`` here; ``CONTROL_CLASS`` also reads in RE2 (pyarrow's compute
functions), for checks over stored columns.
"""

from __future__ import annotations

import re

MAX_ID_CHARS = 128
MAX_LABEL_CHARS = 64
# The characters an id must not hold, as a regex class body.
CONTROL_CLASS = r"\x00-\x1F\x7F-\x9F\x{2028}\x{2029}"
_PY_CONTROL = r"\x00-\x1F\x7F-\x9F\u2028\u2029"
ID_PATTERN = rf"^[^{_PY_CONTROL}]+$"
TEXT_PATTERN = r"^[^\x00]*$"
_BAD = re.compile(f"[{_PY_CONTROL}]")


def describe_char(ch: str) -> str:
    """``U+0000 (NUL)`` style: a control character named without printing it."""
    names = {"\x00": "NUL", "\t": "tab", "\n": "newline", "\r": "carriage return", "\x7f": "DEL"}
    name = names.get(ch)
    return f"U+{ord(ch):04X}" + (f" ({name})" if name else "")


def id_problem(value: object, max_chars: int = MAX_ID_CHARS) -> str | None:
    """Why ``value`` is not a valid id, or None when it is one."""
    if not isinstance(value, str):
        return f"expected a string, got {type(value).__name__}"
    if not value:
        return "empty"
    if len(value) > max_chars:
        return f"{len(value)} characters, at most {max_chars} allowed"
    bad = _BAD.search(value)
    if bad is not None:
        return (
            f"contains the control character {describe_char(bad.group())} at position "
            f"{bad.start()}; ids must be printable"
        )
    return None


def shown(value: str, limit: int = 40) -> str:
    """An id for a message: control characters escaped, long ones cut."""
    text = value if len(value) <= limit else value[:limit] + "..."
    return repr(text)
