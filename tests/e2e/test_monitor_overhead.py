"""The metrics-overhead harness: real servers (synthetic service: no trained project needed),
metrics on and off in one run, CPU read from /proc."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from feedstack.bench.machine import process_cpu_s
from feedstack.bench.metrics_overhead import metric_calls_cpu_us, run_metrics_overhead


def test_process_cpu_grows_with_work() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc")
    before = process_cpu_s(os.getpid())
    sum(i * i for i in range(2_000_000))
    assert before is not None and (process_cpu_s(os.getpid()) or 0.0) > before


def test_metric_calls_cost_microseconds() -> None:
    us = metric_calls_cpu_us(repeats=300)
    assert 0 < us < 5_000


def test_overhead_run_pairs_metrics_on_and_off(project: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc")
    out = run_metrics_overhead(
        project,
        rate=100,
        duration_s=0.5,
        rounds=1,
        service="synthetic",
        idle_s=0.3,
        # Measurable work: without it 50 requests cost less than /proc's 10 ms CPU tick and the
        # pair's ratio could not be formed (a flaky failure in CI).
        synthetic_cpu_ms=2.0,
    )
    assert [r["metrics"] for r in out["runs"]] == [True, False]
    assert all(r["requests"] == 50 and r["errors"] == 0 for r in out["runs"])
    assert len(out["pair_ratios_on_over_off"]) == 1
    assert out["metric_calls_us_per_request"] > 0
