"""Append-only JSON-lines files (rollout decisions, experiment exposures): a batch is flushed and
fsynced before the call returns; a torn last line (a crash mid-append) is skipped on reading and
closed off before the next append, so no later record is ever lost to it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def append_jsonl(path: Path, docs: Iterable[dict[str, Any]]) -> int:
    lines = [json.dumps(d).encode() + b"\n" for d in docs]
    if not lines:
        return 0
    data = b"".join(lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        end = f.seek(0, os.SEEK_END)
        if end > 0:
            f.seek(end - 1)
            if f.read(1) != b"\n":
                data = b"\n" + data
            f.seek(0, os.SEEK_END)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return len(lines)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            out.append(doc)
    return out
