"""Serving metrics: memoized label children and batch helpers export exactly what per-call use
exports (same names, same values)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from feedstack.monitor.metrics import SCORE_BUCKETS, ServingMetrics


def _samples(m: ServingMetrics) -> list[str]:
    return _lines(m.registry)


def _lines(registry: CollectorRegistry) -> list[str]:
    return sorted(
        line
        for line in generate_latest(registry).decode().splitlines()
        if line and not line.startswith("#") and "_created" not in line
    )


def test_cached_labels_return_one_child_per_value() -> None:
    m = ServingMetrics()
    assert m.candidates.labels("als") is m.candidates.labels("als")
    assert m.candidates.labels("als") is not m.candidates.labels("popular")
    assert m.requests.labels(endpoint="feed", protocol="http", code="2xx") is not None


def test_batch_helpers_equal_single_calls() -> None:
    sources = ["als", "popular", "als", "covisit", "als"]
    scores = [-1.5, 0.2, 3.0, 0.0, 9.0]
    one, batch = ServingMetrics(), ServingMetrics()
    for s in sources:
        one.candidates.labels(s).inc()
    # The score histogram is observed a list at a time: the same series as prometheus_client's
    # own Histogram observed one value at a time (bucket edges included: 0.0 and 9.0 > 4.0).
    reference = CollectorRegistry()
    ref = Histogram(
        "feedstack_ranker_score", "Ranker scores.", buckets=SCORE_BUCKETS, registry=reference
    )
    for x in scores:
        ref.observe(x)
    batch.count_sources(sources)
    batch.observe_scores(scores)
    no_scores = [x for x in _samples(batch) if "ranker_score" not in x]
    assert [x for x in _samples(one) if "ranker_score" not in x] == no_scores
    assert [x for x in _samples(batch) if "ranker_score" in x] == _lines(reference)
    assert 'feedstack_served_items_total{source="als"} 3.0' in _samples(batch)


def test_metrics_off_accepts_every_call() -> None:
    m = ServingMetrics(enabled=False)
    m.count_sources(["als"])
    m.observe_scores([1.0])
    m.observe_stages({"rank": 1.0})
    m.request_seconds.labels("feed", "http").observe(0.1)
    assert _samples(m) == []


_MULTI = """
import sys
from prometheus_client import Histogram, generate_latest
from feedstack.monitor.metrics import SCORE_BUCKETS, ServingMetrics
m = ServingMetrics(multiprocess_dir=sys.argv[1])
scores = [-1.5, 0.2, 3.0, 0.0, 9.0]
if sys.argv[2] == "batch":
    m.observe_scores(scores)
else:  # prometheus_client's own Histogram, one value at a time, in the same mode
    ref = Histogram("feedstack_ranker_score", "Ranker scores.", buckets=SCORE_BUCKETS)
    for x in scores:
        ref.observe(x)
m.requests.labels("feed", "http", "2xx").inc()
sys.stdout.write(generate_latest(m.registry).decode())
"""


def test_multiprocess_mode_sums_every_process(tmp_path: Path) -> None:
    """Workers of ``feedstack serve --workers N`` write their own files; any one's registry
    exposes the sum, and the batched score histogram equals per-value observe there too."""

    def run(folder: Path, how: str) -> list[str]:
        folder.mkdir(exist_ok=True)
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
        out = subprocess.run(
            [sys.executable, "-c", _MULTI, str(folder), how],
            env=env, capture_output=True, check=True,
        ).stdout.decode()  # fmt: skip
        return sorted(x for x in out.splitlines() if x and not x.startswith("#"))

    batch = run(tmp_path / "a", "batch")
    again = run(tmp_path / "a", "batch")  # a second process on the same folder: summed
    single = run(tmp_path / "b", "single")
    assert [x for x in batch if "ranker_score" in x] == [x for x in single if "ranker_score" in x]
    assert 'feedstack_requests_total{code="2xx",endpoint="feed",protocol="http"} 1.0' in batch
    assert 'feedstack_requests_total{code="2xx",endpoint="feed",protocol="http"} 2.0' in again
    assert "feedstack_ranker_score_count 10.0" in again
