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

from feedstack.core.errors import BackendUnavailable, InputError, NotSupported

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

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector: ``[{"metric": {...}, "value": [t, "v"]}, ...]``."""
        import urllib.parse

        data = api_get(self.url, "/api/v1/query?query=" + urllib.parse.quote(expr))
        return list(data["result"])

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


def wait_ready(
    url: str,
    timeout_s: float,
    proc: subprocess.Popen[bytes] | None = None,
    pid: int | None = None,
) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BackendUnavailable(f"prometheus exited {proc.returncode} before it was ready")
        if pid is not None and not is_prometheus(pid):
            raise BackendUnavailable("prometheus exited before it was ready (see prometheus.log)")
        try:
            if httpx.get(url + "/-/ready", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise BackendUnavailable(f"prometheus at {url} not ready after {timeout_s:.0f} s")


def start_detached(server: PrometheusServer, timeout_s: float = 60.0) -> int:
    """Start ``server`` in its own session, outliving this process; returns its pid. A shell
    starts it in the background and exits, so it is not our child (nothing to reap)."""
    cmd = server.write_files()
    log = server.workdir / "prometheus.log"
    launcher = subprocess.run(
        ["/bin/sh", "-c", 'exec "$@" >"$LOG" 2>&1 </dev/null & echo $!', "sh", *cmd],
        capture_output=True,
        text=True,
        cwd=server.workdir,
        env={**os.environ, "LOG": str(log)},
        start_new_session=True,
        check=True,
    )
    pid = int(launcher.stdout.strip())
    try:
        wait_ready(server.url, timeout_s, pid=pid)
    except BaseException:
        stop_pid(pid)
        raise
    return pid


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


# ---------------------------------------------------------------- feedstack monitor up / down
STATE_FILE = "state.json"


def project_targets(
    serve_port: int, extra: Sequence[str] = (), worker_metrics_port: int | None = None
) -> list[Target]:
    """The serving replicas (the spec's HTTP port on loopback, plus each ``[JOB=]HOST:PORT`` of
    ``extra``) and the feature worker's metrics port when it exposes one."""
    targets = [Target("feedstack-serve", f"127.0.0.1:{serve_port}")]
    for text in extra:
        job, sep, address = text.rpartition("=")
        host, colon, port = address.rpartition(":")
        if not host or not colon or not port.isdigit():
            raise InputError(f"--target: expected [JOB=]HOST:PORT, got {text!r}")
        targets.append(Target(job if sep and job else "feedstack-serve", address))
    if worker_metrics_port is not None:
        targets.append(Target("feedstack-worker", f"127.0.0.1:{worker_metrics_port}"))
    return targets


def read_state(workdir: Path) -> dict[str, Any] | None:
    import json

    try:
        doc: dict[str, Any] = json.loads((workdir / STATE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InputError(f"{workdir / STATE_FILE}: unreadable ({exc})") from None
    return doc


def is_prometheus(pid: int) -> bool:
    """Whether ``pid`` is a running prometheus (a stale pid may since belong to anything)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"prometheus" in cmdline.split(b"\0")[0]


def up(server: PrometheusServer) -> dict[str, Any]:
    """Start ``server`` detached and record it in ``workdir/state.json``."""
    import json
    from datetime import UTC, datetime

    state = read_state(server.workdir)
    if state is not None and is_prometheus(int(state["pid"])):
        raise InputError(
            f"Prometheus is already running at {state['url']} (pid {state['pid']}): "
            "`feedstack monitor down` first"
        )
    pid = start_detached(server)
    doc = {
        "pid": pid,
        "url": server.url,
        "data_dir": str(server.data_dir),
        "config": str(server.workdir / CONFIG),
        "targets": [f"{t.job}={t.address}" for t in server.targets],
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path = server.workdir / STATE_FILE
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return doc


def down(workdir: Path) -> dict[str, Any]:
    """Stop the server ``up`` started there and remove its TSDB folder."""
    state = read_state(workdir)
    if state is None:
        return {"stopped": False, "reason": "no Prometheus was started here"}
    pid = int(state["pid"])
    stopped = is_prometheus(pid) and stop_pid(pid)
    shutil.rmtree(state.get("data_dir") or "", ignore_errors=True)
    (workdir / STATE_FILE).unlink(missing_ok=True)
    return {"stopped": stopped, "pid": pid, "url": state.get("url")}
