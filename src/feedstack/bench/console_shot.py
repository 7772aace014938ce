"""The console in a real browser: headless Chromium (Debian's ``chromium``) against a running
``feedstack serve`` under live traffic. Used by the browser test (the page's own status: points
per chart, errors seen) and by ``feedstack bench console`` / ``bench all`` (docs/console.png).

    with console_server(work_dir) as live:           # a tiny trained project, served, traffic
        status = console_status(live.console_url)    # the page's #console-status, parsed
        screenshot(live.console_url, Path("docs/console.png"))

The page keeps its status in ``<pre id="console-status">`` (serve/static/console/console.js);
``--dump-dom`` prints the DOM once the virtual-time budget is spent, so no DevTools driver is
needed. Console messages of level error also reach Chromium's log (``--enable-logging=stderr``),
which is returned beside the status.
"""

from __future__ import annotations

import html
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

CHARTS = (
    "chart-rps",
    "chart-latency",
    "chart-fallbacks",
    "chart-ctr",
    "chart-freshness",
    "chart-drift",
)
_STATUS = re.compile(r'<pre id="console-status"[^>]*>(.*?)</pre>', re.S)
# Chromium's log lines for page console messages: "CONSOLE(12)" (older) or ":CONSOLE:" (newer).
_CONSOLE_LOG = re.compile(r"CONSOLE[:(]")


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _chromium(args: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    tool = chromium_path()
    if tool is None:
        raise RuntimeError("chromium is not installed (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="feedstack-chromium-") as profile:
        cmd = [
            tool,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *args,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)


def console_status(url: str, budget_ms: int = 6000, timeout_s: float = 90.0) -> dict[str, Any]:
    """Load ``url`` (the console, key in the fragment) and return the page's status plus the
    error lines Chromium logged for the page (``log_errors``)."""
    proc = _chromium(
        [
            "--enable-logging=stderr",
            "--v=0",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            url,
        ],
        timeout_s,
    )
    m = _STATUS.search(proc.stdout)
    if m is None:
        raise RuntimeError(f"no console status in the page (chromium exit {proc.returncode})")
    status: dict[str, Any] = orjson.loads(html.unescape(m.group(1)))
    status["log_errors"] = [
        line
        for line in proc.stderr.splitlines()
        if _CONSOLE_LOG.search(line) and ("ERROR" in line or "Uncaught" in line)
    ]
    return status


def screenshot(url: str, out: Path, budget_ms: int = 6000, timeout_s: float = 90.0) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.png")
    proc = _chromium(
        [
            f"--virtual-time-budget={budget_ms}",
            "--window-size=1400,1100",
            "--hide-scrollbars",
            f"--screenshot={tmp.resolve()}",
            url,
        ],
        timeout_s,
    )
    if not tmp.is_file():
        raise RuntimeError(f"chromium wrote no screenshot (exit {proc.returncode})")
    tmp.replace(out)
    return out


@dataclass
class LiveConsole:
    http_url: str
    admin_key: str
    project: Path

    @property
    def console_url(self) -> str:
        return f"{self.http_url}/console#key={self.admin_key}"

    def series(self) -> dict[str, Any]:
        r = httpx.get(
            f"{self.http_url}/v1/console/series",
            headers={"x-api-key": self.admin_key},
            timeout=10.0,
        )
        r.raise_for_status()
        doc: dict[str, Any] = r.json()
        return doc


def tiny_project(root: Path, users: int = 300, articles: int = 150, seed: int = 5) -> Path:
    """A simulated world ingested, its features backfilled into the online store, trained (one
    small ranker) and its candidates cached."""
    import yaml

    from feedstack.core.spec import load_spec, write_default_spec
    from feedstack.features.backfill import backfill_log
    from feedstack.features.feast_store import open_feature_sink
    from feedstack.ingest.pipeline import Ingestor
    from feedstack.ingest.readers import read_jsonl
    from feedstack.storage.eventlog import open_event_log
    from feedstack.train.candidate_cache import build_candidate_cache
    from feedstack.train.project import train_project
    from feedstack.train.slates import RankerSize
    from feedstack.world import WorldConfig, write_world

    write_world(WorldConfig(users=users, articles=articles, days=1.0, seed=seed), root / "world")
    project = root / "p"
    write_default_spec(project)
    ing = Ingestor.from_spec(load_spec(project), project)
    ing.ingest(read_jsonl(root / "world" / "events.jsonl"))
    ing.close()
    path = project / "feedstack.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc.setdefault("serve", {})["clock"] = "log"
    doc["api"] = {"rate_per_key_per_s": 100_000.0, "burst_per_key": 100_000}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    sink = open_feature_sink(project)
    log = open_event_log(load_spec(project).backends.event_log, project)
    try:
        backfill_log(log, sink)
    finally:
        log.close()
        sink.close()
    train_project(project, warmup_hours=6, eval_hours=6, sizes=(RankerSize(8, 3),), repeats=5)
    build_candidate_cache(project)
    return project


@contextmanager
def console_server(
    root: Path, *, rate_per_s: float = 20.0, warm_points: int = 5, timeout_s: float = 240.0
) -> Iterator[LiveConsole]:
    """A tiny project served by ``feedstack serve`` with admin/front-end keys, simulated users
    reading and clicking in a background thread (plus unknown users: fallbacks), until the
    console has ``warm_points`` points with CTR and drift values."""
    from feedstack.bench.live import run_live_traffic
    from feedstack.bench.serve import ServerProcess, wait_ready
    from feedstack.serve.auth import api_key_entry
    from feedstack.world import NewsWorld, load_world_config

    project = tiny_project(root) if not (root / "p" / "models").is_dir() else root / "p"
    admin, front = secrets.token_hex(12), secrets.token_hex(12)
    keys = f"{api_key_entry(admin, 'feeds', 'events', 'admin')},{api_key_entry(front)}"
    env = dict(os.environ, FEEDSTACK_API_KEYS=keys, OPENBLAS_NUM_THREADS="1")
    server = ServerProcess(
        ["serve", "--project", str(project), "--port", "0", "--grpc-port", "0", "--json"], env
    )
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        url = str(server.addresses(timeout_s)["http"])
        wait_ready(url, timeout_s)
        config = load_world_config(root / "world")
        world = NewsWorld(config)
        start = config.start + timedelta(days=config.days)

        def users() -> None:
            seed = 0
            while not stop.is_set():
                run_live_traffic(
                    url, world, start, api_key=front, duration_s=3.0,
                    rate_per_s=rate_per_s, speed=60.0, threads=2, seed=seed,
                )  # fmt: skip
                seed += 1

        def strangers() -> None:  # users the model never saw: the cold-user fallback
            with httpx.Client(base_url=url, timeout=10.0) as c:
                while not stop.wait(0.5):
                    c.get(f"/v1/feed/stranger-{secrets.token_hex(3)}", headers={"x-api-key": front})

        threads = [threading.Thread(target=f, daemon=True) for f in (users, strangers)]
        for t in threads:
            t.start()
        live = LiveConsole(url, admin, project)
        _wait_warm(live, warm_points, timeout_s)
        yield live
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15.0)
        server.stop()


def _wait_warm(live: LiveConsole, points: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    fields = ("rps", "p99_ms", "ctr", "freshness_lag_s", "drift", "fallbacks")
    while time.monotonic() < deadline:
        pts = live.series()["points"][-points:]
        if len(pts) >= points and all(_has(pts, f) for f in fields):
            return
        time.sleep(1.0)
    raise RuntimeError(f"the console had no full series after {timeout_s:.0f} s")


def _has(points: list[dict[str, Any]], field: str) -> bool:
    for p in points:
        v = p.get(field)
        if isinstance(v, dict):
            if any(x is not None for x in v.values()):
                return True
        elif v is not None:
            return True
    return False
