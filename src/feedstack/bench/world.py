"""World generation benchmark: seconds, events/s and peak memory, each run in a child process.

Peak memory is the child's own (bench/child.py): everything the generation touched (numpy
buffers, Python objects, the interpreter) and nothing of the parent. The same-run baseline is a
child that only imports ``feedstack.world``: its RSS and start-up time are what any generation
costs before doing any work.

Targets (the issue's): 100,000 users / ~1,000,000 events in <= 60 s on one core; 1,000,000 users
streamed to disk with peak memory <= 2 GB.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from feedstack.bench.child import run_child

# Measured with the defaults (100k users x 1 day: 9.97 events per user-day); used only to turn an
# event count into a number of days.
EVENTS_PER_USER_DAY = 10.0
TIME_TARGET_S = 60.0
MEMORY_TARGET_MB = 2048.0

# The child bodies (see bench/child.py: they read ARGS and set RESULT).
_GENERATE = """
from pathlib import Path
from feedstack.world import WorldConfig, write_world
out = Path(ARGS.pop("out")); fmt = ARGS.pop("format")
RESULT = write_world(WorldConfig(**ARGS), out, fmt)
"""
_BASELINE = "import feedstack.world"


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
    summary, wall, rss_mb = run_child(_GENERATE, args)
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
    _, wall, rss_mb = run_child(_BASELINE)
    return {"import_seconds": round(wall, 3), "import_rss_mb": rss_mb}
