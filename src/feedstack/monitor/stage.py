"""What ``make demo`` shows of monitoring, in one call: the drift-and-slowdown scenario and the
alert rules and dashboard generated from the spec (checked by promtool when installed), and the
same scenario played to a real Prometheus whose alerts must fire (live.py; without the
``prometheus`` binary that part says how to install it and the rest goes on).

    from feedstack.monitor.stage import run_monitor_stage
    result = run_monitor_stage(spec, out_dir / "monitoring")   # JSON-ready dict, seconds

The caller records ``result["scenario"]`` as the measurement kind "drift" (monitor sits below
bench, so it does not write measurements itself).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from feedstack.core.spec import Spec
from feedstack.monitor.bundle import promtool_check, promtool_path, write_monitoring_files
from feedstack.monitor.live import run_live_scenario
from feedstack.monitor.prometheus import Target
from feedstack.monitor.scenario import ScenarioConfig, run_drift_scenario


def run_monitor_stage(
    spec: Spec,
    out_dir: Path,
    seed: int = 0,
    prometheus: bool = True,
    extra_targets: Sequence[Target] = (),
) -> dict[str, Any]:
    cfg = ScenarioConfig(seed=seed)
    prom: dict[str, Any] = {"skipped": "not asked for"}
    if prometheus:
        scenario, prom = run_live_scenario(
            spec, out_dir / "prometheus", cfg, extra_targets=extra_targets
        )
        if "skipped" in prom:
            logging.getLogger(__name__).warning("live Prometheus skipped: %s", prom["skipped"])
    else:
        scenario = run_drift_scenario(spec, cfg)
    files = write_monitoring_files(spec, out_dir)
    checked: Any = "promtool not installed"
    if promtool_path() is not None:
        checked = {k: v["ok"] for k, v in promtool_check(out_dir).items()}
    d = scenario.detected_after_min
    return {
        "scenario": scenario.summary(),
        "headline": {
            "steady_minutes": scenario.steady_minutes,
            "false_alarms": sum(scenario.false_alarms.values()),
            "topic_surge_detected_after_min": d.get("drift:click_topic"),
            "dwell_shift_detected_after_min": d.get("drift:dwell_ms"),
            "slowdown_detected_after_min": d.get("p99_latency"),
        },
        # One row per simulated minute after the reference: KL per feature, p99, what fired.
        "timeline": scenario.timeline,
        "files": {k: str(v) for k, v in files.items()},
        "promtool": checked,
        # The real Prometheus: each alert that fired, seconds from the injection to firing.
        "prometheus": prom,
    }
