"""The world benchmark's plumbing on a tiny world (the real sizes run in ``feedstack bench``)."""

from __future__ import annotations

from pathlib import Path

from feedstack.bench.world import run_world_bench


def test_bench_reports_time_rate_and_child_peak_memory(tmp_path: Path) -> None:
    result = run_world_bench(users=300, events=1_000, big_users=400, workdir=tmp_path)
    timed, memory = result["timed"], result["memory"]
    assert timed["users"] == 300 and memory["users"] == 400
    assert timed["days"] < 1  # ~1,000 events at ~10 per user-day
    assert timed["events"] > 0 and timed["events_per_s"] > 0 and timed["seconds"] > 0
    # The child's own peak, at least what a bare interpreter importing the world needs.
    assert memory["peak_rss_mb"] >= 0.5 * result["baseline"]["import_rss_mb"] > 0
    assert memory["meets_memory_target"] is True
    assert not list(tmp_path.iterdir())  # the generated files are removed
