"""Writes the golden files of tests/golden/ with today's code. Run it only when a format changes
on purpose (and then keep the old files too: the point is that yesterday's bytes still load):

    .venv/bin/python -m tests.golden.make_golden

- ``candidate_entry_fsc1.bin``: one candidate-cache entry in the FSC1 encoding, of ``entry()``;
- ``checkpoint_events.jsonl`` + ``checkpoint_v1.npz``: a feature-worker checkpoint after those
  events (the test replays the events with today's aggregator and compares the states);
- ``model_news_v1/``: a small trained news model folder (the test loads it and verifies it
  reproduces its own check scores).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import orjson

from feedstack.storage.candidate_cache import CandidateList

HERE = Path(__file__).parent
DAY_START_S = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def entry() -> CandidateList:
    """The known candidate list of ``candidate_entry_fsc1.bin``."""
    n, names = 7, ("covisit_score", "content_score", "trending_rank")
    return CandidateList(
        version="news-20260101T000000Z-golden00",
        built_at_s=DAY_START_S + 0.25,
        items=[f"a{i}" for i in range(n)],
        scores=np.linspace(1.0, -0.5, n, dtype=np.float32),
        sources=np.array([0, 1, 2, 0, 1, 2, 0], dtype=np.uint8),
        source_names=("covisit", "content", "trending"),
        features=np.arange(n * len(names), dtype=np.float32).reshape(n, len(names)) / 8,
        feature_names=names,
    )


def main() -> None:
    from feedstack.bench.freshness import SyntheticStream
    from feedstack.features.aggregator import FeatureAggregator
    from feedstack.features.checkpoint import save_checkpoint
    from feedstack.storage.candidate_cache import encode
    from feedstack.train.project import train_project
    from feedstack.train.slates import RankerSize
    from feedstack.world import WorldConfig
    from tests.factories import world_project

    (HERE / "candidate_entry_fsc1.bin").write_bytes(encode(entry()))

    evs = SyntheticStream(40, 15, seed=3).take(300, DAY_START_S, 30.0, late_s=20)
    (HERE / "checkpoint_events.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in evs))
    agg = FeatureAggregator()
    agg.apply(evs)
    save_checkpoint(agg, "300", HERE / "checkpoint_v1.npz")

    with tempfile.TemporaryDirectory() as tmp:
        project = world_project(Path(tmp), WorldConfig(users=120, articles=60, days=1.0, seed=5))
        result = train_project(
            project, warmup_hours=6, eval_hours=6, sizes=(RankerSize(5, 3),), repeats=10
        )
        target = HERE / "model_news_v1"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(Path(result["model_dir"]), target)


if __name__ == "__main__":
    main()
