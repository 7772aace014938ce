"""Live simulated traffic against a running ``feedstack serve``, over HTTP: the demo's online run.

Simulated users (the world's own, Zipf-weighted: a few heavy readers, a long tail) request their
feed (``GET /v1/feed/{user}``); the world's click model decides what they do with it
(``NewsWorld.respond``: clicks, dwells, hides, from the hidden true relevance and position bias);
those events go back through the API (``POST /v1/events``), so they reach the event log, the
feature worker's input and the item cache like any client's. The server logs each served list as
an impression itself.

Simulated time runs ``speed`` times faster than the wall clock from the log's newest event (the
server runs with ``serve.clock: log``, so it serves as of the events it has read). Requests are
sent open-loop at ``rate_per_s`` from ``threads`` clients; latency is measured from the time a
request was *scheduled*, so a slow server shows up as queueing delay instead of as fewer requests
(no coordinated omission).

Besides the client-side numbers it reads the server's CPU time (``/proc/<pid>/stat`` of the
supervisor and every serving worker) before and after: ``server_cores`` = CPU seconds / wall
seconds is what this load cost, which the planner's serving-core prediction is checked against.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import numpy as np

from feedstack.bench.machine import tree_cpu_s
from feedstack.world import NewsWorld


@dataclass
class _Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    fallbacks: Counter[str] = field(default_factory=Counter)
    impressions: Counter[str] = field(default_factory=Counter)  # items shown, by arm
    clicks: Counter[str] = field(default_factory=Counter)  # by arm
    expected: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    requests_by_arm: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)
    events_posted: int = 0
    events_accepted: int = 0


def zipf_users(users: Sequence[str], n: int, rng: np.random.Generator, a: float = 1.1) -> list[str]:
    """``n`` draws over ``users`` with P(rank r) ~ 1 / r^a (a shuffled rank order)."""
    ranks = np.arange(1, len(users) + 1, dtype=np.float64)
    p = ranks**-a
    order = rng.permutation(len(users))
    picks = rng.choice(len(users), size=n, p=p / p.sum())
    return [users[order[i]] for i in picks.tolist()]


def run_live_traffic(
    http_url: str,
    world: NewsWorld,
    sim_start: datetime,
    *,
    api_key: str,
    duration_s: float = 20.0,
    rate_per_s: float = 40.0,
    k: int = 10,
    speed: float = 60.0,
    threads: int = 4,
    seed: int = 0,
    server_pid: int | None = None,
    post_events: bool = True,
) -> dict[str, Any]:
    """Drive the server for ``duration_s`` seconds; returns what was measured. Without
    ``post_events`` the users only read their feeds (the load the planner prices as serving)."""
    rng = np.random.default_rng(seed)
    n = max(1, int(duration_s * rate_per_s))
    users = zipf_users(world.user_ids(), n, rng)
    tally = _Tally()
    local = threading.local()
    cpu0 = tree_cpu_s(server_pid) if server_pid else None
    t0 = time.monotonic() + 0.2

    clients: list[httpx.Client] = []

    def client() -> httpx.Client:
        c: httpx.Client | None = getattr(local, "client", None)
        if c is None:
            c = httpx.Client(base_url=http_url, timeout=10.0)
            local.client = c
            with tally.lock:
                clients.append(c)
        return c

    def one(i: int) -> None:
        scheduled = t0 + i / rate_per_s
        delay = scheduled - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        uid = users[i]
        at = sim_start + timedelta(seconds=(scheduled - t0) * speed)
        c = client()
        try:
            r = c.get(f"/v1/feed/{uid}", params={"k": k}, headers={"x-api-key": api_key})
        except httpx.HTTPError as exc:
            with tally.lock:
                tally.errors[type(exc).__name__] += 1
            return
        latency_ms = (time.monotonic() - scheduled) * 1000.0
        with tally.lock:
            tally.latencies_ms.append(latency_ms)
            tally.statuses[r.status_code] += 1
        if r.status_code != 200:
            return
        feed = r.json()
        items = [it["item_id"] for it in feed["items"]]
        arm = str(feed.get("arm", "champion"))
        rid = str(feed.get("request_id") or uuid.uuid4().hex)
        events = world.respond(uid, items, at, rid, np.random.default_rng([seed, i]))
        expected = world.expected_clicks(uid, items, at) if items else 0.0
        with tally.lock:
            tally.requests_by_arm[arm] += 1
            tally.impressions[arm] += len(items)
            tally.clicks[arm] += sum(1 for e in events if e.type == "click")
            tally.expected[arm] += expected
            tally.versions[str(feed.get("model_version"))] += 1
            tally.sources.update(it["source"] for it in feed["items"])
            if feed.get("fallback"):
                tally.fallbacks[str(feed["fallback"])] += 1
        if not events or not post_events:
            return
        body = b"\n".join(e.model_dump_json().encode() for e in events)
        try:
            p = c.post(
                "/v1/events",
                content=body,
                headers={"content-type": "application/x-ndjson", "x-api-key": api_key},
            )
            accepted = int(p.json().get("accepted", 0)) if p.status_code == 202 else 0
        except httpx.HTTPError as exc:
            with tally.lock:
                tally.errors[f"events:{type(exc).__name__}"] += 1
            return
        with tally.lock:
            tally.events_posted += len(events)
            tally.events_accepted += accepted

    began = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(one, range(n)))
    finally:
        for c in clients:
            c.close()
    wall_s = time.monotonic() - began
    cpu1 = tree_cpu_s(server_pid) if server_pid else None
    lat = np.asarray(tally.latencies_ms)
    ok = sum(v for s, v in tally.statuses.items() if s == 200)
    arms = {
        arm: {
            "requests": tally.requests_by_arm[arm],
            "impressions": tally.impressions[arm],
            "clicks": tally.clicks[arm],
            "ctr": round(tally.clicks[arm] / tally.impressions[arm], 5)
            if tally.impressions[arm]
            else None,
            "expected_clicks_per_request": round(
                tally.expected[arm] / tally.requests_by_arm[arm], 5
            )
            if tally.requests_by_arm[arm]
            else None,
        }
        for arm in sorted(tally.requests_by_arm)
    }
    out: dict[str, Any] = {
        "requests": n,
        "ok": ok,
        "rate_per_s": rate_per_s,
        "rps": round(ok / wall_s, 2),
        "duration_s": round(wall_s, 2),
        "sim_minutes": round(wall_s * speed / 60.0, 1),
        "k": k,
        "p50_ms": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
        "p95_ms": round(float(np.percentile(lat, 95)), 2) if lat.size else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 2) if lat.size else None,
        "latencies_ms": sorted(round(x, 3) for x in tally.latencies_ms),
        "statuses": {str(s): v for s, v in sorted(tally.statuses.items())},
        "errors": dict(tally.errors),
        "fallbacks": dict(tally.fallbacks),
        "fallback_rate": round(sum(tally.fallbacks.values()) / ok, 4) if ok else None,
        "arms": arms,
        "model_versions": dict(tally.versions),
        "sources": dict(tally.sources),
        "events_posted": tally.events_posted,
        "events_accepted": tally.events_accepted,
    }
    if cpu0 is not None and cpu1 is not None:
        out["server_cpu_s"] = round(cpu1 - cpu0, 3)
        out["server_cores"] = round((cpu1 - cpu0) / wall_s, 4)
    return out
