"""World generation benchmark: seconds, events/s and peak memory, each run in a child process.

Peak memory is the child's own high-water mark (``VmHWM`` of /proc/self/status, read by the child
at its end), so it counts everything the generation touched (numpy buffers, Python objects, the
interpreter) and nothing of the parent. (``ru_maxrss`` from ``wait4`` is not used where VmHWM
exists: Linux carries the maximum across fork+exec, so a large parent, e.g. ``bench all`` after
the ingest benchmark, inflated it to the parent's size.) The same-run baseline is a child that
only imports ``feedstack.world``: its RSS and start-up time are what any generation costs before
doing any work.

Targets (the issue's): 100,000 users / ~1,000,000 events in <= 60 s on one core; 1,000,000 users
streamed to disk with peak memory <= 2 GB.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

# Measured with the defaults (100k users x 1 day: 9.97 events per user-day); used only to turn an
# event count into a number of days.
EVENTS_PER_USER_DAY = 10.0
TIME_TARGET_S = 60.0
MEMORY_TARGET_MB = 2048.0

_PEAK = """
def _peak_kb():
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
"""
_CHILD = (
    _PEAK
    + """
import sys, orjson
from pathlib import Path
from feedstack.world import WorldConfig, write_world
args = orjson.loads(sys.argv[1])
out = Path(args.pop("out")); fmt = args.pop("format")
summary = write_world(WorldConfig(**args), out, fmt)
sys.stdout.buffer.write(orjson.dumps({"summary": summary, "peak_kb": _peak_kb()}))
"""
)
_BASELINE = (
    _PEAK
    + """
import sys, orjson
import feedstack.world
sys.stdout.buffer.write(orjson.dumps({"peak_kb": _peak_kb()}))
"""
)


def run_world_bench(
    users: int = 100_000,
    events: int | None = None,
    *,
    big_users: int = 0,
    days: float = 1.0,
    seed: int = 0,
    fmt: str = "jsonl",
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Time a ``users`` world (``events`` ~ sets its days) and, if ``big_users``, its memory run.

    Files go to a temporary folder under ``workdir`` (default: the system's) and are deleted.
    """
    if events is not None:
        days = max(1 / 96, events / (users * EVENTS_PER_USER_DAY))
    result: dict[str, Any] = {"baseline": _baseline()}
    with tempfile.TemporaryDirectory(prefix="feedstack-bench-world-", dir=workdir) as tmp:
        timed = _generate(users, days, seed, fmt, Path(tmp) / "timed")
        timed["meets_time_target"] = timed["seconds"] <= TIME_TARGET_S
        result["timed"] = timed
        if big_users > 0:
            big = _generate(big_users, 1.0, seed, fmt, Path(tmp) / "memory")
            big["meets_memory_target"] = big["peak_rss_mb"] <= MEMORY_TARGET_MB
            result["memory"] = big
    result["targets"] = {"seconds": TIME_TARGET_S, "peak_rss_mb": MEMORY_TARGET_MB}
    return result


def articles_for(users: int, days: float) -> int:
    """Articles per world: a newsroom scaled to the audience (>= 500 per day)."""
    return max(1, round(max(500, users // 50) * days))


def _generate(users: int, days: float, seed: int, fmt: str, out: Path) -> dict[str, Any]:
    args = {
        "users": users,
        "articles": articles_for(users, days),
        "days": days,
        "seed": seed,
        "out": str(out),
        "format": fmt,
    }
    out_doc, wall, rss_mb = _child(["-c", _CHILD, orjson.dumps(args).decode()])
    summary: dict[str, Any] = out_doc["summary"]
    size = Path(summary["path"]).stat().st_size
    return {
        "users": users,
        "articles": args["articles"],
        "days": days,
        "format": fmt,
        "events": summary["events"],
        "seconds": summary["seconds"],
        "wall_seconds": round(wall, 3),
        "events_per_s": round(summary["events"] / summary["seconds"]),
        "peak_rss_mb": rss_mb,
        "file_mb": round(size / 2**20, 1),
        "bytes_per_event": round(size / max(1, summary["events"]), 1),
        "events_per_user_day": summary["events_per_user_day"],
    }


def _baseline() -> dict[str, Any]:
    _, wall, rss_mb = _child(["-c", _BASELINE])
    return {"import_seconds": round(wall, 3), "import_rss_mb": rss_mb}


def _child(args: list[str]) -> tuple[dict[str, Any], float, float]:
    """Run ``python args``; its JSON output, wall seconds and peak RSS (MB)."""
    began = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    with proc.stdout:
        stdout = proc.stdout.read()
    # wait4, not Popen.wait: it returns this child's own resource usage.
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"world benchmark child failed with exit code {proc.returncode}")
    doc: dict[str, Any] = orjson.loads(stdout)
    if doc.get("peak_kb"):
        return doc, wall, round(doc["peak_kb"] / 1024, 1)
    # No /proc: ru_maxrss (KiB on Linux, bytes on macOS), an upper bound after fork.
    scale = 1 if sys.platform == "darwin" else 1024
    return doc, wall, round(usage.ru_maxrss * scale / 2**20, 1)
