"""The measurements folder: every benchmark and evaluation leaves a JSON record there.

``plan`` and ``report`` read the latest record of each kind and cite it (command and time). A
record says what it measured (``kind``, one of ``Kind``: mypy rejects a kind nobody reads), when,
with which command, on which machine (cores, memory, CPU, versions) and the result.

File names are ``<kind>-<UTC time to the microsecond>.json``, created exclusively (two records in
one instant get a numbered suffix; neither replaces the other). Readers match ``<kind>-<digit>*``
and check the kind inside: ``serve-*`` also matched ``serve-targets-*`` records, and newest-by-name
then picked a serve-targets record as the latest serve run.
"""

from __future__ import annotations

import os
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, get_args

import orjson

from feedstack import __version__
from feedstack.core.redact import redact_text

Kind = Literal[
    "abtest-live",
    "bench-abtest",
    "bench-features",
    "bench-freshness",
    "bench-gowalla",
    "bench-gowalla-serve",
    "bench-ingest",
    "bench-rankers",
    "bench-replicas",
    "bench-request-path",
    "bench-rollout",
    "bench-scale-batch",
    "bench-soak",
    "bench-stream",
    "bench-worker",
    "bench-world",
    "candidates",
    "drift",
    "evaluate",
    "live",
    "metrics-overhead",
    "plan",
    "prometheus-alerts",
    "rollout-demo",
    "serve",
    "serve-targets",
    "train",
]
KINDS: tuple[str, ...] = get_args(Kind)
_PACKAGES = ("numpy", "pyarrow", "duckdb", "pydantic", "orjson", "redis", "feast", "lightgbm")


def record(kind: Kind, result: dict[str, Any], command: list[str] | None = None) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "kind": kind,
        "measured_at": now.isoformat(timespec="seconds"),
        "measured_at_us": now.isoformat(timespec="microseconds"),
        "command": " ".join(command if command is not None else ["feedstack", *sys.argv[1:]]),
        "feedstack_version": __version__,
        "machine": machine_info(),
        "result": result,
    }


def save(folder: Path, rec: dict[str, Any]) -> Path:
    """Write ``rec`` under a name no other record has (exclusive create), atomically."""
    if rec.get("kind") not in KINDS:
        raise ValueError(f"measurement kind {rec.get('kind')!r}; known: {', '.join(KINDS)}")
    folder.mkdir(parents=True, exist_ok=True)
    at = str(rec.get("measured_at_us") or rec["measured_at"])
    stamp = at.replace(":", "").replace("-", "").replace("+0000", "Z")
    # A record may name backends (a cache URL, the command line): never with a password.
    data = redact_text(orjson.dumps(rec, option=orjson.OPT_INDENT_2).decode()).encode()
    for n in range(1000):
        path = folder / f"{rec['kind']}-{stamp}{f'-{n}' if n else ''}.json"
        tmp = folder / f".{path.name}.tmp"
        tmp.write_bytes(data)
        try:
            os.link(tmp, path)  # fails if the name exists: never replaces another record
        except FileExistsError:
            continue
        finally:
            tmp.unlink(missing_ok=True)
        return path
    raise FileExistsError(f"{folder}: 1000 records of {rec['kind']} in one microsecond")


def records(folder: Path, kind: Kind) -> list[tuple[Path, dict[str, Any]]]:
    """Every record of ``kind``, oldest first (names sort by time), with its file."""
    found = []
    for path in sorted(folder.glob(f"{kind}-[0-9]*.json"), key=lambda p: p.stem):
        rec: dict[str, Any] = orjson.loads(path.read_bytes())
        if rec.get("kind") == kind:
            found.append((path, rec))
    return found


def latest(folder: Path, kind: Kind) -> dict[str, Any] | None:
    found = records(folder, kind)
    return found[-1][1] if found else None


def latest_by(folder: Path, kind: Kind, key: str) -> list[dict[str, Any]]:
    """The newest record of ``kind`` for each value of ``result[key]`` (e.g. per backend)."""
    newest: dict[str, dict[str, Any]] = {}
    for _, rec in records(folder, kind):
        newest[str(rec["result"].get(key))] = rec
    return list(newest.values())


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def machine_info() -> dict[str, Any]:
    """What a measurement was taken on: cores, memory, CPU model, Python and library versions,
    and the load average when it was recorded (a number taken on a busy machine says so)."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {
        "cores": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "load_average": load,
    }
