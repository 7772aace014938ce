"""Yesterday's bytes still load: files written by an earlier version of the code (make_golden.py
wrote them; they are never regenerated to make a test pass) must decode to the same values with
today's code. A format change that breaks one must keep a reader for the old one (or rebuild the
data, and say so); it never misreads it.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from feedstack.features.aggregator import FeatureAggregator
from feedstack.features.checkpoint import load_checkpoint
from feedstack.storage.candidate_cache import decode
from feedstack.train.artifacts import load, verify
from tests.golden.make_golden import entry
from tests.unit.test_worker import assert_same_state

HERE = Path(__file__).parent


def test_a_fsc1_candidate_cache_entry_still_decodes_to_the_same_list() -> None:
    got = decode((HERE / "candidate_entry_fsc1.bin").read_bytes())
    assert got.same_as(entry())


def test_a_v1_checkpoint_still_loads_to_the_state_the_events_give_today() -> None:
    lines = (HERE / "checkpoint_events.jsonl").read_bytes().splitlines()
    today = FeatureAggregator()
    today.apply([orjson.loads(line) for line in lines])
    agg, offset = load_checkpoint(HERE / "checkpoint_v1.npz")
    assert offset == str(len(lines))
    assert_same_state(agg, today)


def test_a_v1_news_model_folder_still_loads_and_reproduces_its_check_scores() -> None:
    model = load(HERE / "model_news_v1")
    assert [s.name for s in model.sources] == ["covisit", "content", "trending"]
    checks = verify(model)
    assert checks and all(checks.values()), checks
