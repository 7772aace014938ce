"""The measurement records (storage/measurements.py): exclusive names, kinds kept apart, old
records still read."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from feedstack.storage import measurements


def test_two_records_of_one_instant_are_both_kept(tmp_path: Path) -> None:
    rec = measurements.record("serve", {"n": 1})
    first = measurements.save(tmp_path, rec)
    second = measurements.save(tmp_path, {**rec, "result": {"n": 2}})
    assert first != second
    assert [r["result"]["n"] for _, r in measurements.records(tmp_path, "serve")] == [1, 2]


def test_a_kind_never_reads_the_records_of_a_longer_kind(tmp_path: Path) -> None:
    """``serve-*`` matched ``serve-targets-*``: newest-by-name took a serve-targets record as the
    latest serve run."""
    measurements.save(tmp_path, measurements.record("serve", {"rps": 300}))
    measurements.save(tmp_path, measurements.record("serve-targets", {"ok": True}))
    latest = measurements.latest(tmp_path, "serve")
    assert latest is not None and latest["result"] == {"rps": 300}


def test_records_written_under_the_old_names_are_still_read(tmp_path: Path) -> None:
    old = {"kind": "train", "measured_at": "2026-11-01T10:00:00+00:00", "result": {"v": "old"}}
    (tmp_path / "train-20261101T100000+0000.json").write_bytes(orjson.dumps(old))
    assert measurements.latest(tmp_path, "train") == old
    measurements.save(tmp_path, measurements.record("train", {"v": "new"}))
    assert [r["result"]["v"] for _, r in measurements.records(tmp_path, "train")] == ["old", "new"]


def test_a_record_says_the_load_it_was_taken_under() -> None:
    machine = measurements.record("bench-world", {})["machine"]
    assert len(machine["load_average"]) == 3 and machine["cores"] >= 1


def test_an_unknown_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="measurement kind 'nope'"):
        measurements.save(tmp_path, {"kind": "nope", "measured_at": "x", "result": {}})
