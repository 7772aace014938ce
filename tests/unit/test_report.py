"""The design report and the plan CLI on a tmp project with synthetic records (the real format)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from feedstack.cli.main import app
from feedstack.core.spec import Spec, parse_spec
from feedstack.report.build import build_report
from feedstack.report.measured import Measurements, plan_inputs, resolve
from feedstack.storage import measurements

SECTIONS = ["problem", "metrics", "data", "model", "serve", "scale", "monitor", "cost"]


def _save(folder: Path, kind: str, result: dict[str, Any], at: str) -> None:
    rec = measurements.record(kind, result, command=["feedstack", kind.replace("-", " ")])
    rec["measured_at"] = at  # distinct, ordered file names
    measurements.save(folder, rec)


def write_records(folder: Path) -> None:
    serve = {"rps": 0.0, "p50_ms": 8.0, "p95_ms": 30.0, "p99_ms": 60.0, "errors": 0,
             "floor_rps": 2000.0, "protocol": "http", "mode": "rate",
             "feed": {"max_ms": 90.0}}  # fmt: skip
    _save(folder, "serve", {**serve, "rps": 50.0, "rate": 50}, "2026-11-24T08:00:00+00:00")
    # Faster but over the 120 ms objective: not the throughput at the SLO.
    _save(folder, "serve", {**serve, "rps": 90.0, "rate": 90, "p95_ms": 400.0},
          "2026-11-24T08:01:00+00:00")  # fmt: skip
    _save(folder, "candidates", {"users": 400, "candidates_per_user": 200.0,
                                 "bytes_per_user": 20_000.0, "seconds": 1.2},
          "2026-11-24T08:02:00+00:00")  # fmt: skip
    train = {
        "data": {"users": 400, "articles": 200, "impressions": 90_000, "clicks": 10_000},
        "seconds": {"total": 30.0},
        "selected": "100x15",
        "budget_ms": 2.0,
        "selection": [
            {"model": "100x15", "trees": 100, "leaves": 15, "ndcg@10": 0.31, "fit_s": 1.0,
             "p50_ms": 0.8, "p99_ms": 1.5, "fits_budget": True},
            {"model": "300x31", "trees": 300, "leaves": 31, "ndcg@10": 0.32, "fit_s": 3.0,
             "p50_ms": 2.5, "p99_ms": 4.0, "fits_budget": False},
        ],
        "lift": {"blend_ndcg@10": 0.25, "ranker_ndcg@10": 0.31, "relative": 0.24},
        "evaluation": {
            "candidate_recall": 0.8,
            "expected_clicks": {"100x15": 0.2, "blend": 0.15, "logged": 0.1},
            "models": {"100x15": {"recall@10": 0.4}, "blend": {"recall@10": 0.3}},
        },
    }  # fmt: skip
    _save(folder, "train", train, "2026-11-24T08:03:00+00:00")
    _save(folder, "evaluate", {"recall@20": 0.19, "candidate_recall@500": 0.7,
                               "first_stage": {"recall@20": 0.15}},
          "2026-11-24T08:04:00+00:00")  # fmt: skip
    for backend, p99 in (("sqlite", 900.0), ("redis", 1500.0)):
        # The record's real shape: percentiles, and lag_all_ms a summary (a regression: the
        # freshness CDF expected a list of every lag and was never drawn from real records).
        _save(folder, "bench-freshness", {"backend": backend, "lag_p50_ms": 100.0,
                                          "lag_p95_ms": 300.0, "lag_p99_ms": p99,
                                          "lag_max_ms": 2 * p99, "events_per_s": 5000.0,
                                          "lag_all_ms": {"p50": 100.0, "p99": p99, "n": 9}},
              f"2026-11-24T08:05:0{len(backend)}+00:00")  # fmt: skip
    _save(folder, "bench-ingest", {"embedded": {"events_per_s": 150_000}},
          "2026-11-24T08:06:00+00:00")  # fmt: skip
    _save(folder, "live", {"rps": 100.0, "server_cpu_s": 30.0, "elapsed_s": 12.0,
                           "p50_ms": 9.0, "p95_ms": 40.0, "p99_ms": 70.0},
          "2026-11-24T08:07:00+00:00")  # fmt: skip


@pytest.fixture
def records(tmp_path: Path) -> Path:
    folder = tmp_path / "proj" / "measurements"
    write_records(folder)
    return folder


def small_spec() -> Spec:
    return parse_spec({"traffic": {"daily_active_users": 86_400, "requests_per_user_per_day": 10}})


def test_plan_inputs_from_records(records: Path) -> None:
    spec = Spec()
    got = plan_inputs(Measurements.read(records), spec)
    # The fastest run within p95 <= 120 ms, one server process = one core.
    assert got["rps_per_core_at_slo"].value == 50.0
    assert "p95 30.0 ms" in got["rps_per_core_at_slo"].source
    assert got["floor_rps_per_core"].value == 2000.0
    assert got["bytes_per_candidate"].value == 100.0  # 20,000 bytes / 200 candidates
    assert got["candidate_build_ms_per_user"].value == pytest.approx(3.0)  # 1.2 s / 400
    assert got["train_s_per_million_events"].value == pytest.approx(300.0)  # 30 s / 0.1 M
    assert got["rank_ms_per_request"].value == 0.8
    assert got["ingest_events_per_s_per_core"].value == 150_000
    assert got["feature_lag_p99_s"].value == 1.5  # the production backend (redis) first
    for q in got.values():
        assert q.label == "measured"
        assert "`feedstack " in q.source and "2026-11-24T08" in q.source
    _, inputs = resolve(spec, records)
    assert inputs.live_articles.label == "assumed"


def test_report_files_sections_labels_and_plots(records: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    doc = build_report(small_spec(), records, out)
    assert list(doc) == SECTIONS
    stored = orjson.loads((out / "report.json").read_bytes())
    assert list(stored) == SECTIONS
    for section in stored.values():
        for name, q in section["numbers"].items():
            assert q["label"] in ("measured", "derived", "assumed"), name
            assert q["source"], name
    plots = {p["file"] for s in stored.values() for p in s["plots"]}
    assert plots == {"latency_cdf.png", "freshness_cdf.png", "recall_at_k.png",
                     "model_selection.png", "cost_breakdown.png", "autoscaled_day.png",
                     "design.svg"}  # fmt: skip
    for name in plots - {"design.svg"}:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "design.svg").read_text().startswith("<svg ")
    md = (out / "report.md").read_text()
    for label in ("| measured |", "| derived |", "| assumed |"):
        assert label in md
    assert "`feedstack train` at 2026-11-24T08:03:00+00:00" in md
    html = (out / "report.html").read_text()
    assert html.count("src='data:image/png;base64,") == len(plots) - 1
    assert html.count("src='data:image/svg+xml;base64,") == 1
    # Provenance once per record (a footnote), not in every row; the full source on hover.
    notes = re.findall(r"<li id='src-\d+'>([^<]*)</li>", html)
    assert len(notes) == len(set(notes))
    assert sum("`feedstack train` at 2026-11-24T08:03:00+00:00" in n for n in notes) == 1
    numbers = re.findall(r"<table class='numbers'>.*?</table>", html, re.S)
    assert numbers and not any("<th>source</th>" in t for t in numbers)
    assert 'title="measured: train-' in html
    answers = stored["problem"]["answers"]
    assert answers["p95_ms"]["verdict"] == "meets"  # the live run: 40 ms
    assert answers["freshness_s"]["verdict"] == "meets"  # 1.5 s
    assert answers["bottleneck"] in stored["cost"]["numbers"]["monthly_cost"]["source"]


def test_business_impact_known_answer(records: Path, tmp_path: Path) -> None:
    doc = build_report(small_spec(), records, tmp_path / "r")
    n = doc["metrics"]["numbers"]
    assert n["ctr_lift"]["value"] == pytest.approx(1.0)  # 0.2 / 0.1 - 1 against the logged policy
    assert n["ctr_lift"]["label"] == "derived"
    # 864,000 requests/day x 0.1 more clicks each; x 730/24 days x $0.01.
    assert n["extra_clicks_per_day"]["value"] == pytest.approx(86_400.0)
    assert n["extra_value_usd_per_month"]["value"] == pytest.approx(86_400 * 730 / 24 * 0.01, 1e-3)


def test_cores_check_from_the_live_record(records: Path, tmp_path: Path) -> None:
    doc = build_report(small_spec(), records, tmp_path / "r")
    check = doc["monitor"]["cores_check"]
    assert check["predicted_cores"] == pytest.approx(2.0)  # 100 rps / 50 per core
    assert check["measured_cores"] == pytest.approx(2.5)  # 30 cpu-s / 12 s
    assert check["ratio"] == pytest.approx(0.8) and check["within_tolerance"]


def test_report_without_measurements_says_what_to_run(tmp_path: Path) -> None:
    doc = build_report(Spec(), tmp_path / "nothing", tmp_path / "r")
    assert list(doc) == SECTIONS
    assert any("not measured yet (run: feedstack bench serve" in m for m in doc["serve"]["missing"])
    assert any("feedstack train" in m for m in doc["model"]["missing"])
    assert doc["problem"]["answers"]["p95_ms"]["verdict"] == "not measured yet"
    assert (tmp_path / "r" / "report.html").is_file()


def test_cli_plan_json_is_fast_and_has_the_issue_keys(records: Path) -> None:
    project = records.parent
    runner = CliRunner()
    t = time.perf_counter()
    res = runner.invoke(app, ["plan", "-p", str(project), "--json"])
    elapsed = time.perf_counter() - t
    assert res.exit_code == 0, res.output
    out = orjson.loads(res.stdout)
    for key in ("peak_qps", "serving_cores", "redis_gb", "monthly_cost_usd", "budget_usd",
                "within_budget", "bottleneck"):  # fmt: skip
        assert key in out
    assert out["inputs"]["rps_per_core_at_slo"]["label"] == "measured"
    assert elapsed < 1.0
    res = runner.invoke(app, ["plan", "-p", str(project), "--dau", "1000", "--json"])
    assert orjson.loads(res.stdout)["traffic_x2"]["daily_active_users"] == 2000
    assert runner.invoke(app, ["plan", "--dau", "0"]).exit_code == 2


def test_cli_report_json(records: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["report", "-p", str(records.parent), "--out", str(tmp_path / "o"), "--json"]
    )
    assert res.exit_code == 0, res.output
    out = orjson.loads(res.stdout)
    assert out["files"] == ["report.md", "report.html", "report.json"]
    assert (tmp_path / "o" / "report.md").is_file()


def test_monitor_shows_results_not_settings(records: Path, tmp_path: Path) -> None:
    _save(records, "bench-rollout", {"world": {"users": 50_000}, "seconds": 3.5,
                                     "bad_canary": {"rolled_back": 5, "max_minutes_to_rollback": 4},
                                     "targets": {"bad_within_10_min": True}},
          "2026-11-24T08:08:00+00:00")  # fmt: skip
    numbers = build_report(small_spec(), records, tmp_path / "r")["monitor"]["numbers"]
    assert numbers["bench-rollout.bad_canary.max_minutes_to_rollback"]["value"] == 4
    assert numbers["bench-rollout.targets.bad_within_10_min"]["value"] == 1
    assert numbers["bench-rollout.seconds"]["label"] == "measured"
    assert not any(k.startswith("bench-rollout.world") for k in numbers)


def test_per_core_input_comes_from_the_multi_process_run(tmp_path: Path) -> None:
    """bench serve's record of `feedstack serve --workers 2` with events in the mix: feed
    requests/s over the cores every server process used (not one core per process)."""
    folder = tmp_path / "measurements"
    run = {"rps": 1100.0, "feed_rps": 1000.0, "event_share": 0.1, "workers": 2,
           "server_cpu_s": 30.0, "elapsed_s": 20.0, "p50_ms": 3.0, "p95_ms": 9.0,
           "p99_ms": 14.0, "errors": 0, "floor_rps": 9000.0, "protocol": "http",
           "rate": None}  # fmt: skip
    _save(folder, "serve", run, "2026-11-24T08:00:00+00:00")
    got = plan_inputs(Measurements.read(folder), Spec())["rps_per_core_at_slo"]
    assert got.label == "measured" and got.value == pytest.approx(1000.0 / 1.5)
    assert "10% of requests posting events" in got.source and "2 worker processes" in got.source
    assert "every server process" in got.source
