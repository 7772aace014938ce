"""The measurements folder: every benchmark and evaluation leaves a JSON record there.

``plan`` and ``report`` read the latest record of each kind and cite it (command and time).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from feedstack import __version__
from feedstack.bench.machine import machine_info
from feedstack.core.redact import redact_text


def record(kind: str, result: dict[str, Any], command: list[str] | None = None) -> dict[str, Any]:
    return {
        "kind": kind,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(command if command is not None else ["feedstack", *sys.argv[1:]]),
        "feedstack_version": __version__,
        "machine": machine_info(),
        "result": result,
    }


def save(folder: Path, rec: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stamp = rec["measured_at"].replace(":", "").replace("-", "")
    path = folder / f"{rec['kind']}-{stamp}.json"
    tmp = path.with_suffix(".json.tmp")
    # A record may name backends (a cache URL, the command line): never with a password.
    text = redact_text(orjson.dumps(rec, option=orjson.OPT_INDENT_2).decode())
    tmp.write_bytes(text.encode())
    tmp.replace(path)
    return path


def latest(folder: Path, kind: str) -> dict[str, Any] | None:
    paths = sorted(folder.glob(f"{kind}-*.json"))
    if not paths:
        return None
    data: dict[str, Any] = orjson.loads(paths[-1].read_bytes())
    return data


def latest_by(folder: Path, kind: str, key: str) -> list[dict[str, Any]]:
    """The newest record of ``kind`` for each value of ``result[key]`` (e.g. per backend)."""
    newest: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob(f"{kind}-*.json")):
        rec: dict[str, Any] = orjson.loads(path.read_bytes())
        newest[str(rec["result"].get(key))] = rec
    return list(newest.values())
