"""A few feeds served in-process from a project: what the demo shows of the request path.

``sample_feeds(project)`` builds the service the way ``feedstack serve`` does, serves ``users``
users who have a candidate list and ``cold`` users who do not, and returns an example feed
(each item with its score, source and model version), the fallback reasons and the
in-process latency. The impressions go to the project's event log like any served list.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from feedstack.serve.service import build_service


def sample_feeds(
    project: Path, users: int = 50, cold: int = 5, k: int = 10, as_of_log: bool = False
) -> dict[str, Any]:
    """``as_of_log``: serve as of the log's newest event (``serve.clock: log``), for a world
    generated in the past."""
    from feedstack.core.spec import load_spec

    spec = load_spec(project)
    if as_of_log:
        spec = spec.model_copy(update={"serve": spec.serve.model_copy(update={"clock": "log"})})
    svc = build_service(project, spec=spec, background=False)
    try:
        ready, why = svc.ready()
        known = _users(project)
        with_list = [u for u in known if svc.candidates.get(u) is not None][:users]
        asked = [*with_list, *(f"cold-user-{j}" for j in range(cold))]
        feeds, ms = [], []
        for u in asked:
            t = time.perf_counter()
            feeds.append(svc.feed(u, k))
            ms.append((time.perf_counter() - t) * 1000.0)
    finally:
        svc.close()
    reasons: dict[str, int] = {}
    for f in feeds:
        reasons[f.fallback or "none"] = reasons.get(f.fallback or "none", 0) + 1
    with_items = [f for f in feeds if f.items]
    example = next((f for f in with_items if f.fallback is None), None) or next(
        iter(with_items or feeds), None
    )
    arr = np.asarray(ms) if ms else np.zeros(1)
    return {
        "ready": ready,
        "not_ready_because": why,
        "requests": len(feeds),
        "users_with_lists": len(with_list),
        "fallbacks": reasons,
        "latency_ms": {
            "p50": round(float(np.quantile(arr, 0.5)), 3),
            "p99": round(float(np.quantile(arr, 0.99)), 3),
        },
        "example": None
        if example is None
        else {
            "user_id": example.user_id,
            "model_version": example.model_version,
            "arm": example.arm,
            "fallback": example.fallback,
            "stage_ms": {s: round(v, 3) for s, v in example.stage_ms.items()},
            "items": [
                {"item_id": i.item_id, "score": round(i.score, 4), "source": i.source}
                for i in example.items
            ],
        },
    }


def _users(project: Path, limit: int = 20_000) -> list[str]:
    """Users of the first ``limit`` events of the log, in order of appearance (the item cache
    keeps no users, so the log is where they are)."""
    import orjson

    from feedstack.core.spec import load_spec
    from feedstack.storage.eventlog import open_event_log

    log = open_event_log(load_spec(project).backends.event_log, project)
    try:
        seen: dict[str, None] = {}
        for _, raw in log.read_raw(None, limit):
            user = orjson.loads(raw).get("user_id")
            if user:
                seen[str(user)] = None
        return list(seen)
    finally:
        log.close()
