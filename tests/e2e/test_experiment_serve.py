"""A/B tests through the serving path: the running experiment assigns each user an arm by a
stable hash, serves that arm's ranker (or the popular lists), logs experiment and arm with each
impression, and ``feedstack experiment status`` computes the lift and the sample-ratio check from
those impressions and the clicks posted back. Real parts: the small trained project of the
request-path tests, its SQLite log, candidate cache and LightGBM ranker."""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from feedstack.cli.main import app
from feedstack.core.errors import InputError
from feedstack.core.events import Impression
from feedstack.core.spec import load_spec
from feedstack.features.item_cache import ItemFeatureCache
from feedstack.ingest.pipeline import Ingestor
from feedstack.monitor.metrics import ServingMetrics
from feedstack.registry.experiment import (
    Arm,
    running_experiment,
    start_experiment,
    stop_experiment,
)
from feedstack.serve.articles import LISTS
from feedstack.serve.experiments import ExperimentRouter
from feedstack.serve.models import load_models, newest_version
from feedstack.serve.pipeline import FeedPipeline
from feedstack.storage.candidate_cache import open_candidate_cache
from feedstack.storage.eventlog import iter_log, open_event_log
from tests.unit.test_serve_pipeline import Parts, parts, trained  # noqa: F401 (fixtures)

NOW = datetime(2026, 11, 30, tzinfo=UTC)


def _pipeline(p: Parts) -> FeedPipeline:
    spec = load_spec(p.project)
    slow = {"p95_ms": 5000.0, "p99_alert_ms": 6000.0}  # budgets far above a loaded machine
    spec = spec.model_copy(update={"latency": spec.latency.model_copy(update=slow)})
    models = load_models(p.project)
    return FeedPipeline(
        spec,
        models,
        open_candidate_cache(spec.backends.candidate_cache, p.project),
        p.users,
        ItemFeatureCache.open(open_event_log(spec.backends.event_log, p.project)),
        ingestor=Ingestor.from_spec(spec, p.project, p.clock),
        metrics=ServingMetrics(p.registry),
        clock=p.clock,
        background=False,
        experiments=ExperimentRouter.load(p.project, models),
    )


def _challenger(p: Parts) -> str:
    """A second model folder (the same ranker under another version name)."""
    champion = newest_version(p.project)
    name = f"{champion}-b"
    shutil.copytree(p.project / "models" / champion, p.project / "models" / name)
    return name


def _impressions(p: Parts) -> list[Impression]:
    log = open_event_log(load_spec(p.project).backends.event_log, p.project)
    try:
        return [r.event for r in iter_log(log) if isinstance(r.event, Impression)]
    finally:
        log.close()


def test_served_experiment_assigns_logs_and_analyses(parts: Parts) -> None:  # noqa: F811
    champion = newest_version(parts.project)
    challenger = _challenger(parts)
    arms = [Arm("control", champion, 0.5), Arm("b", challenger, 0.5)]
    start_experiment(parts.project, "ranker-ab", arms, NOW)
    svc = _pipeline(parts)
    users = [f"user-{n}" for n in range(300)]
    feeds = {u: svc.feed(u, 5) for u in users}
    try:
        assert {f.experiment for f in feeds.values()} == {"ranker-ab"}
        # Stable: the same arm on every request, and the arm's ranker served it.
        assert all(svc.feed(u, 5).arm == feeds[u].arm for u in users[:40])
        version = {"control": champion, "b": challenger}
        for f in feeds.values():
            assert f.model_version in (version[f.arm], "fallback")
        counts = Counter(f.arm for f in feeds.values())
        assert 110 < counts["b"] < 190, counts  # 50/50 by hash
        # Clicks posted back: on the first item of every b feed, of every third control feed.
        clicked = Counter[str]()
        events = []
        for i, (u, f) in enumerate(feeds.items()):
            if f.items and (f.arm == "b" or i % 3 == 0):
                clicked[f.arm] += 1
                events.append(orjson.dumps({
                    "type": "click", "event_id": f"c-{f.request_id}", "user_id": u,
                    "event_time": parts.clock.now().isoformat(), "article_id": f.items[0].item_id,
                    "request_id": f.request_id, "position": 0,
                }))  # fmt: skip
        assert svc.ingest(events).accepted == len(events)
    finally:
        svc.close()  # flushes the impression writer
    served = [i for i in _impressions(parts) if i.experiment == "ranker-ab"]
    # Every feed with items logged once with its arm (the repeats of the first 40 users too).
    assert len(served) == sum(bool(f.items) for f in feeds.values()) + sum(
        bool(feeds[u].items) for u in users[:40]
    )
    assert all(i.arm == feeds[i.user_id].arm for i in served)
    res = CliRunner().invoke(
        app, ["experiment", "status", "ranker-ab", "-p", str(parts.project), "--json"]
    )
    assert res.exit_code == 0, res.output
    doc = orjson.loads(res.stdout)
    assert doc["exposures_served"] == len(served)
    assert {a: doc["arms"][a]["clicks"] for a in ("control", "b")} == dict(clicked)
    assert doc["srm"]["users"] == [counts["control"], counts["b"]]
    assert not doc["srm"]["mismatch"]
    lift = doc["arms"]["b"]["lift"]
    assert lift["low"] < lift["estimate"] < lift["high"] and lift["estimate"] > 0
    text = CliRunner().invoke(app, ["experiment", "status", "ranker-ab", "-p", str(parts.project)])
    assert text.exit_code == 0 and "sample ratio" in text.output


def test_popular_arm_serves_the_fallback_lists_without_a_fallback_reason(
    parts: Parts,  # noqa: F811
) -> None:
    champion = newest_version(parts.project)
    arms = [Arm("control", champion, 0.5), Arm("pop", "popular", 0.5, {"policy": "popular"})]
    start_experiment(parts.project, "vs-popular", arms, NOW)
    svc = _pipeline(parts)
    try:
        feeds = [svc.feed(f"user-{n}", 5) for n in range(80)]
    finally:
        svc.close()
    pop = [f for f in feeds if f.arm == "pop"]
    assert pop and all(f.model_version == "popular" and f.fallback is None for f in pop)
    assert all(i.source in LISTS for f in pop for i in f.items)  # never the ranker's sources


def test_one_experiment_at_a_time_and_arms_checked_at_start(parts: Parts) -> None:  # noqa: F811
    runner = CliRunner()
    p = str(parts.project)
    res = runner.invoke(app, ["experiment", "start", "x", "--arm", "control=champion",
                              "--arm", "b=no-such-model", "-p", p])  # fmt: skip
    assert res.exit_code == 2 and "no-such-model" in res.output
    res = runner.invoke(app, ["experiment", "start", "x", "--arm", "control=champion",
                              "--arm", "b=popular", "-p", p, "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = orjson.loads(res.stdout)
    assert doc["arms"][0]["version"] == newest_version(parts.project)  # resolved at start
    assert doc["arms"][1]["settings"] == {"policy": "popular"}
    with pytest.raises(InputError, match="'x' is running"):
        start_experiment(parts.project, "y", [Arm("a", "popular", 0.5), Arm("b", "popular", 0.5)],
                         NOW)  # fmt: skip
    stop_experiment(parts.project, "x", NOW)
    assert running_experiment(parts.project) is None
    assert ExperimentRouter.load(parts.project, None) is None


def test_served_exposures_path_is_pure(tmp_path: Path) -> None:
    """Impressions of another experiment or of none are not this experiment's exposures."""
    from feedstack.registry.experiment import exposures_from_impressions

    def imp(rid: str, exp: str | None, arm: str | None) -> Impression:
        return Impression(event_id=f"i-{rid}", event_time=NOW, request_id=rid, user_id="u1",
                          item_ids=["a"], model_version="m", experiment=exp, arm=arm)  # fmt: skip

    got = exposures_from_impressions("e1", [imp("1", "e1", "b"), imp("2", "e2", "b"),
                                            imp("3", None, None)])  # fmt: skip
    assert [(e.request_id, e.arm) for e in got] == [("1", "b")]


def test_impression_json_is_unchanged_without_an_experiment() -> None:
    """Regression: the new optional fields printed as null changed every impression's canonical
    bytes (the world generator's fast encoder no longer matched event_to_json)."""
    from feedstack.core.events import event_to_json, parse_event_json

    plain = Impression(event_id="i", event_time=NOW, request_id="r", user_id="u",
                       item_ids=["a"], model_version="m")  # fmt: skip
    assert b"experiment" not in event_to_json(plain) and b"arm" not in event_to_json(plain)
    served = plain.model_copy(update={"experiment": "ab", "arm": "b"})
    back = parse_event_json(event_to_json(served))
    assert isinstance(back, Impression) and (back.experiment, back.arm) == ("ab", "b")
