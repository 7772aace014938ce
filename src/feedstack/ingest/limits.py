"""Bounds checked on raw bytes, before any parser sees them.

JSON parsers recurse: orjson refuses more than 1,024 levels on reading and 254 on writing,
pydantic's parser has its own limit, and each refusal is a different exception in a different
place (a 1,000-deep event once came back as a 500 from re-serialization). An event is at most
three levels deep (the event object, ``item_ids``, nothing below), so a payload nested deeper
than ``ingest.max_json_depth`` is refused here with one clear reason, whatever reads it next.

The check is two ``bytes.count`` calls for any payload with no more brackets than the bound
(every real event); only a payload with more brackets is scanned: string contents removed by
one regex, then the running depth over the remaining brackets in numpy.
"""

from __future__ import annotations

import re

import numpy as np

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_OPEN = np.frombuffer(b"[{", np.uint8)
_CLOSE = np.frombuffer(b"]}", np.uint8)


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in ``raw`` (brackets inside strings do not
    count). Unbalanced input gives the depth it reaches; it is refused by the parser later."""
    stripped = _STRING.sub(b'""', raw)
    a = np.frombuffer(stripped, np.uint8)
    step = np.isin(a, _OPEN).astype(np.int32) - np.isin(a, _CLOSE).astype(np.int32)
    if not step.size:
        return 0
    return int(np.cumsum(step).max(initial=0))


def depth_problem(raw: bytes, max_depth: int) -> str | None:
    """Why ``raw`` is nested too deep to parse, or None."""
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return None  # cannot be deeper than its number of opening brackets
    depth = json_depth(raw)
    if depth > max_depth:
        return f"nested {depth} levels deep, more than ingest.max_json_depth={max_depth}"
    return None
