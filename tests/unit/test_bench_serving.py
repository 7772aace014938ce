"""Pure parts of the serving benchmarks: the load generator's mix, the soak's memory growth,
the targets summary (figures with their same-run baselines)."""

from __future__ import annotations

from typing import Any

import orjson

from feedstack.bench.loadgen import EventMaker, user_mix
from feedstack.bench.serve_targets import serving_targets
from feedstack.bench.soak import by_minute, growth_mb_per_min


def test_event_share_leaves_the_feed_mix_of_a_seed_unchanged() -> None:
    users = [f"u{i}" for i in range(50)]
    plain = user_mix(users, 2_000, seed=3)
    mixed = user_mix(users, 2_000, seed=3, event_share=0.1)
    assert [(r.user, r.k) for r in plain] == [(r.user, r.k) for r in mixed]
    share = sum(r.event for r in mixed) / len(mixed)
    assert 0.08 < share < 0.12 and not any(r.event for r in plain)


def test_events_follow_a_served_feed_at_the_log_time() -> None:
    maker = EventMaker(seed=1, sim_start_s=1_767_225_600.0)
    assert maker.make() is None  # nothing served yet
    maker.note_json(orjson.dumps({"request_id": "r1", "user_id": "u9", "items": [
        {"item_id": "a1"}, {"item_id": "a2"}, {"item_id": "a3"}]}))  # fmt: skip
    click, dwell = (orjson.loads(p) for p in maker.make() or [])
    assert click["type"] == "click" and dwell["type"] == "dwell"
    assert click["request_id"] == dwell["request_id"] == "r1" and click["user_id"] == "u9"
    assert click["article_id"] == dwell["article_id"] in {"a1", "a2", "a3"}
    assert click["event_time"].startswith("2026-01-01T00:00")  # the log's clock, not the wall's
    assert click["event_id"] != dwell["event_id"]


def test_memory_growth_is_the_slope_after_settling() -> None:
    # 100 MB for two minutes of warm-up, then +0.5 MB per minute.
    samples = [(t, 100.0 + (0.5 * (t - 120) / 60 if t >= 120 else -50 + t / 2.4)) for t in
               range(0, 600, 5)]  # fmt: skip
    assert growth_mb_per_min([(float(t), mb) for t, mb in samples], 120.0) == 0.5
    assert growth_mb_per_min([(0.0, 1.0)], 120.0) is None
    assert by_minute([(0.0, 1.0), (30.0, 3.0), (61.0, 5.0)]) == [2.0, 5.0]


def _serve(protocol: str, rate: float | None, **r: Any) -> dict[str, Any]:
    return {"kind": "serve", "result": {"protocol": protocol, "rate": rate, **r}}


def test_targets_summary_states_each_figure_with_its_baseline() -> None:
    records = [
        _serve("http", 300.0, p99_ms=9.0, floor_p99_ms_at_rate=1.5, workers=2, event_share=0.1),
        _serve("http", None, rps=1_500.0, floor_rps=6_000.0),
        _serve("grpc", 300.0, p99_ms=10.0),
        _serve("grpc", None, rps=1_350.0),
        _serve("http", 300.0, p99_ms=99.0, candidate_cache="redis"),  # not the reference run
        {"kind": "bench-request-path", "result": {"requests_per_s_one_thread": 800.0}},
        {"kind": "bench-soak", "result": {"duration_s": 600.0, "p99_ms_worst_minute": 12.0,
                                          "rss_growth_mb_per_min_after_settle": 1.4}},
    ]  # fmt: skip
    t = serving_targets(records)
    assert t["http_p99_over_floor"] == 6.0 and t["saturation_over_inproc"] == 1.875
    assert t["grpc_over_http_p99_at_300"] == 1.111 and t["grpc_over_http_saturation"] == 0.9
    assert t["meets"] == {
        "p99_at_300": True,
        "saturation_1000": True,
        "saturation_over_inproc": True,
        "grpc_p99_within_20pct": True,
        "grpc_saturation_within_20pct": True,
        "soak_p99": True,
        "soak_growth": False,
    }
    assert serving_targets([])["meets"]["p99_at_300"] is None  # not measured: no verdict
