"""The drift-and-slowdown scenario played to a real Prometheus: do the generated alerts fire?

The scenario (scenario.py) simulates the world one minute per step. Here each monitored minute
is also published on a loopback ``/metrics`` endpoint under the serving process's own metric
names (``ServingMetrics``: the feed requests and their latency histogram; ``DriftMetrics``: KL,
PSI, KS p-value and live count per feature), and a Prometheus server (prometheus.py) scrapes it
every second and evaluates the generated rules, time-compressed (``scaled_rules``: one minute of
the rules is one second, as one simulated minute is one wall second here). The steady minutes
are played fast except the last ``live_steady_minutes`` (a quiet baseline Prometheus sees), then
the injection and ``after_minutes`` more at ``tick_s`` each. A watcher polls
``/api/v1/alerts``; the result records, for each alert that fired, the wall seconds from the
injection to the first poll that saw it firing (a negative number would be a false alarm).

    scenario, prom = run_live_scenario(spec, workdir)   # prom: JSON-ready, "skipped" if absent
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, start_http_server

from feedstack.core.spec import Spec
from feedstack.monitor.metrics import DriftMetrics, ServingMetrics
from feedstack.monitor.prometheus import (
    INSTALL_HINT,
    PrometheusServer,
    Target,
    free_port,
    prometheus_path,
    scaled_rules,
)
from feedstack.monitor.rules import rules_document
from feedstack.monitor.scenario import Minute, ScenarioConfig, ScenarioResult, run_drift_scenario

# What the injected incident must set off: the slowdown and the drift.
EXPECTED = ("FeedstackLatencyP99High", "FeedstackFeatureDrift")


@dataclass(frozen=True)
class LiveConfig:
    tick_s: float = 1.0  # wall seconds per simulated minute while live
    live_steady_minutes: int = 8  # quiet minutes Prometheus sees before the injection
    settle_s: float = 15.0  # after the scenario: wait at most this for expected alerts
    scrape_interval_s: float = 1.0
    evaluation_interval_s: float = 1.0
    poll_s: float = 0.25

    @property
    def time_scale(self) -> float:
        return self.tick_s / 60.0


class AlertWatcher:
    """Polls Prometheus' alerts; keeps the first wall time each (alert, feature) was firing."""

    def __init__(self, prom: PrometheusServer, poll_s: float) -> None:
        self.prom, self.poll_s = prom, poll_s
        self.first_firing: dict[tuple[str, str], float] = {}
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-watcher", daemon=True)

    def start(self) -> AlertWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.poll_s)

    def poll(self) -> None:
        now = time.time()
        try:
            alerts = self.prom.alerts()
        except Exception:
            self.errors += 1
            return
        for a in alerts:
            if a.get("state") == "firing":
                labels = a.get("labels", {})
                key = (str(labels.get("alertname")), str(labels.get("feature", "")))
                self.first_firing.setdefault(key, now)

    def fired(self, names: Sequence[str]) -> bool:
        seen = {k[0] for k in self.first_firing}
        return all(n in seen for n in names)


class _Publisher:
    """Turns scenario minutes into metric values, pacing the live part on the wall clock."""

    def __init__(self, live: LiveConfig, prom: PrometheusServer) -> None:
        self.registry = CollectorRegistry()
        self.serving = ServingMetrics(self.registry)
        self.drift = DriftMetrics(self.registry)
        self.live, self.prom = live, prom
        self.next_tick: float | None = None
        self.injected_at: float | None = None

    def __call__(self, m: Minute) -> None:
        if m.after > -self.live.live_steady_minutes and self.next_tick is None:
            self._wait_scraped()
            self.next_tick = time.monotonic()
        if self.next_tick is not None:
            delay = self.next_tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.next_tick = max(self.next_tick + self.live.tick_s, time.monotonic())
        if m.after == 1:
            self.injected_at = time.time()
        self.drift.publish(m.drift.features)
        hist = self.serving.request_seconds.labels("feed", "http")
        for s in (np.asarray(m.latency_ms) / 1000.0).tolist():
            hist.observe(s)
        self.serving.requests.labels("feed", "http", "2xx").inc(len(m.latency_ms))

    def _wait_scraped(self, timeout_s: float = 30.0) -> None:
        """The baseline starts once Prometheus has scraped the exporter (target up)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if any(t["health"] == "up" for t in self.prom.targets_health()):
                    return
            except Exception:
                pass
            time.sleep(0.2)


def run_live_scenario(
    spec: Spec,
    workdir: Path,
    cfg: ScenarioConfig | None = None,
    live: LiveConfig | None = None,
    extra_targets: Sequence[Target] = (),
) -> tuple[ScenarioResult, dict[str, Any]]:
    """The scenario, and what a real Prometheus made of it (or ``skipped`` with how to install)."""
    live = live or LiveConfig()
    if prometheus_path() is None:
        return run_drift_scenario(spec, cfg), {"skipped": INSTALL_HINT}
    began = time.perf_counter()
    port = free_port()
    rules = scaled_rules(
        rules_document(spec), live.time_scale, min_range_s=4 * live.scrape_interval_s
    )
    targets = [Target("feedstack-scenario", f"127.0.0.1:{port}"), *extra_targets]
    prom = PrometheusServer(
        workdir,
        targets,
        rules,
        scrape_interval_s=live.scrape_interval_s,
        evaluation_interval_s=live.evaluation_interval_s,
    )
    pub = _Publisher(live, prom)
    httpd, _ = start_http_server(port, addr="127.0.0.1", registry=pub.registry)
    try:
        with prom:
            watcher = AlertWatcher(prom, live.poll_s).start()
            try:
                scenario = run_drift_scenario(spec, cfg, pub)
                deadline = time.monotonic() + live.settle_s
                while time.monotonic() < deadline and not watcher.fired(EXPECTED):
                    time.sleep(live.poll_s)
            finally:
                watcher.stop()
            health = prom.targets_health()
            scraped = _feed_requests_by_job(prom)
            url = prom.url
    finally:
        httpd.shutdown()
        httpd.server_close()
    summary = _summary(watcher, pub.injected_at, health, url, live, began)
    return scenario, summary | {"feed_requests_seen": scraped}


def _feed_requests_by_job(prom: PrometheusServer) -> dict[str, float]:
    """The feed requests Prometheus holds per scrape job (cumulative, as last scraped)."""
    try:
        rows = prom.query('sum by (job) (feedstack_requests_total{endpoint="feed"})')
    except Exception:
        return {}
    return {str(r["metric"].get("job")): float(r["value"][1]) for r in rows}


def _summary(
    watcher: AlertWatcher,
    injected_at: float | None,
    targets: list[dict[str, Any]],
    url: str,
    live: LiveConfig,
    began: float,
) -> dict[str, Any]:
    alerts = []
    for (name, feature), t in sorted(watcher.first_firing.items(), key=lambda kv: kv[1]):
        after = None if injected_at is None else round(t - injected_at, 2)
        row: dict[str, Any] = {"name": name, "seconds_after_injection": after}
        if feature:
            row["feature"] = feature
        alerts.append(row)
    first: dict[str, float | None] = {}
    for row in alerts:
        s = row["seconds_after_injection"]
        if s is not None and s >= 0:
            first.setdefault(row["name"], s)
    return {
        "url": url,
        "targets": targets,
        "profile": {
            "time_scale": round(live.time_scale, 6),
            "scrape_interval_s": live.scrape_interval_s,
            "evaluation_interval_s": live.evaluation_interval_s,
            "wall_seconds_per_simulated_minute": live.tick_s,
        },
        "alerts": alerts,
        "first_firing_s": {n: first.get(n) for n in EXPECTED} | first,
        "false_alarms": [a for a in alerts if (a["seconds_after_injection"] or 0) < 0],
        "expected_fired": all(first.get(n) is not None for n in EXPECTED),
        "poll_errors": watcher.errors,
        "seconds": round(time.perf_counter() - began, 1),
    }
