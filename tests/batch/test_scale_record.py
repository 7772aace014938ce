"""The planner reads the per-core candidate-build rate from the scale benchmark's record."""

from __future__ import annotations

from pathlib import Path

from feedstack.core.spec import Spec
from feedstack.report.measured import resolve
from feedstack.storage import measurements


def test_plan_reads_the_scale_rate(tmp_path: Path) -> None:
    runs = {
        "local": [{"ok": True, "world_users": 1000, "candidate_ms_per_user_core": 9.0}],
        "local[2]": [
            {"ok": True, "world_users": 1000, "candidate_ms_per_user_core": 5.0},
            {"ok": True, "world_users": 4000, "candidate_ms_per_user_core": 4.0},
            {"ok": False, "world_users": 16000},
        ],
    }
    rec = measurements.record("bench-scale-batch", {"runs": runs}, ["feedstack", "bench"])
    measurements.save(tmp_path, rec)
    _, inputs = resolve(Spec(), tmp_path)
    q = inputs.candidate_build_ms_per_user
    assert q.value == 4.0  # Spark's engine, the largest world that ran
    assert "bench-scale-batch" in q.source
