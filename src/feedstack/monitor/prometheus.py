"""A real Prometheus server (Debian package ``prometheus``) on loopback, scraping feedstack.

    with PrometheusServer(workdir, targets, rules_document(spec)) as prom:
        prom.alerts()        # /api/v1/alerts: name, labels, state, activeAt
        prom.targets()       # /api/v1/targets: each scrape target's health

``workdir`` receives ``prometheus.yml`` (the generated scrape config: one job per kind of
target) and ``rules.yml`` (the rules of monitor/rules.py); the TSDB lives in a temporary folder
inside it, removed on stop. ``scaled_rules`` makes the time-compressed rules profile of the
demo: every range and ``for`` multiplied by ``time_scale`` (1/60: a minute of the generated
rules becomes a second), for a scenario that plays one simulated minute per wall second.
``feedstack monitor up`` / ``down`` run the same server detached (``start_detached``/``stop_pid``).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from feedstack.core.errors import BackendUnavailable, NotSupported

INSTALL_HINT = "prometheus is not installed: apt-get install prometheus (Debian/Ubuntu)"
CONFIG, RULES = "prometheus.yml", "rules.yml"
_RANGE = re.compile(r"\[(\d+)([smhdw])\]")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
COST_ALERT = "FeedstackProjectedCostOverBudget"


@dataclass(frozen=True)
class Target:
    """A scrape target: ``job`` names its kind (serve, worker, scenario); ``address`` host:port."""

    job: str
    address: str
    metrics_path: str = "/metrics"


def prometheus_path() -> str | None:
    return shutil.which("prometheus")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def scrape_config(
    targets: Sequence[Target], scrape_interval_s: float, evaluation_interval_s: float
) -> dict[str, Any]:
    jobs: dict[tuple[str, str], list[str]] = {}
    for t in targets:
        jobs.setdefault((t.job, t.metrics_path), []).append(t.address)
    return {
        "global": {
            "scrape_interval": _dur(scrape_interval_s),
            "scrape_timeout": _dur(min(scrape_interval_s, 10.0)),
            "evaluation_interval": _dur(evaluation_interval_s),
        },
        "rule_files": [RULES],
        "scrape_configs": [
            {"job_name": job, "metrics_path": path, "static_configs": [{"targets": addrs}]}
            for (job, path), addrs in jobs.items()
        ],
    }


def scaled_rules(doc: Mapping[str, Any], time_scale: float, min_range_s: float) -> dict[str, Any]:
    """The rules with every range ``[5m]`` and ``for`` times ``time_scale`` (ranges at least
    ``min_range_s``, so a rate always spans a few scrapes). Rates are then per wall second, which
    is 1/``time_scale`` simulated seconds: the projected-cost alert, the one absolute rate,
    is scaled back by ``time_scale``."""
    out: dict[str, Any] = copy.deepcopy(dict(doc))

    def range_of(m: re.Match[str]) -> str:
        seconds = int(m.group(1)) * _SECONDS[m.group(2)] * time_scale
        return f"[{_dur(max(seconds, min_range_s))}]"

    for group in out["groups"]:
        for rule in group["rules"]:
            rule["expr"] = _RANGE.sub(range_of, rule["expr"])
            if "for" in rule:
                rule["for"] = _dur(_seconds(rule["for"]) * time_scale)
            if rule.get("alert") == COST_ALERT:
                lhs, sep, rhs = rule["expr"].rpartition(" > ")
                rule["expr"] = f"({lhs}) * {time_scale:.10g}{sep}{rhs}"
    return out


class PrometheusServer:
    """``prometheus`` as a child process on ``127.0.0.1:port``; a context manager."""

    def __init__(
        self,
        workdir: Path,
        targets: Sequence[Target],
        rules: Mapping[str, Any],
        *,
        port: int | None = None,
        scrape_interval_s: float = 15.0,
        evaluation_interval_s: float = 15.0,
    ) -> None:
        self.workdir, self.targets, self.rules = workdir, list(targets), rules
        self.port = port or free_port()
        self.scrape_interval_s, self.evaluation_interval_s = (
            scrape_interval_s,
            evaluation_interval_s,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.data_dir: Path | None = None

    def write_files(self) -> list[str]:
        """prometheus.yml, rules.yml and a fresh TSDB folder; returns the command line."""
        tool = prometheus_path()
        if tool is None:
            raise NotSupported(INSTALL_HINT)
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = scrape_config(self.targets, self.scrape_interval_s, self.evaluation_interval_s)
        _write_yaml(self.workdir / CONFIG, config)
        _write_yaml(self.workdir / RULES, dict(self.rules))
        self.data_dir = Path(tempfile.mkdtemp(prefix="tsdb-", dir=self.workdir))
        return [
            tool,
            f"--config.file={self.workdir / CONFIG}",
            f"--storage.tsdb.path={self.data_dir}",
            "--storage.tsdb.retention.time=1d",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]

    def start(self, timeout_s: float = 60.0) -> PrometheusServer:
        cmd = self.write_files()
        log = (self.workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        log.close()
        try:
            wait_ready(self.url, timeout_s, self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout_s)
        self.proc = None
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def alerts(self) -> list[dict[str, Any]]:
        return list(api_get(self.url, "/api/v1/alerts")["alerts"])

    def targets_health(self) -> list[dict[str, Any]]:
        active = api_get(self.url, "/api/v1/targets")["activeTargets"]
        return [
            {
                "job": t["labels"].get("job"),
                "instance": t["labels"].get("instance"),
                "health": t.get("health"),
                "last_error": t.get("lastError") or None,
            }
            for t in active
        ]

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def api_get(base_url: str, path: str, timeout_s: float = 5.0) -> Any:
    import httpx

    try:
        resp = httpx.get(base_url + path, timeout=timeout_s)
        resp.raise_for_status()
        body = resp.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise BackendUnavailable(f"Prometheus at {base_url}{path}: {exc}") from None
    if body.get("status") != "success":
        raise BackendUnavailable(f"Prometheus at {base_url}{path}: {body.get('error')}")
    return body["data"]


def wait_ready(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BackendUnavailable(f"prometheus exited {proc.returncode} before it was ready")
        try:
            if httpx.get(url + "/-/ready", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise BackendUnavailable(f"prometheus at {url} not ready after {timeout_s:.0f} s")


def start_detached(server: PrometheusServer, timeout_s: float = 60.0) -> int:
    """Start ``server`` in its own session (it outlives this process); returns its pid."""
    cmd = server.write_files()
    with (server.workdir / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, cwd=server.workdir, start_new_session=True
        )
    try:
        wait_ready(server.url, timeout_s, proc)
    except BaseException:
        proc.terminate()
        raise
    return proc.pid


def stop_pid(pid: int, timeout_s: float = 20.0) -> bool:
    """SIGTERM ``pid`` and wait for it to go; False if it was not running."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child (started in-process)
                return True
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return True


def _write_yaml(path: Path, doc: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(dict(doc), sort_keys=False, width=10_000), encoding="utf-8")
    tmp.replace(path)


def _dur(seconds: float) -> str:
    """A Prometheus duration in whole milliseconds (``1500ms``) or seconds (``5s``)."""
    ms = max(1, round(seconds * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _seconds(duration: str) -> float:
    m = re.fullmatch(r"(\d+)([smhdw])", duration)
    if m is None:
        raise ValueError(f"not a simple duration: {duration!r}")
    return int(m.group(1)) * _SECONDS[m.group(2)]
