"""``build_service``: a ready FeedService wired from a project's spec (the transports, the demo
and the benchmarks call this; tests may assemble ``FeedPipeline`` from parts instead)."""

from __future__ import annotations

from pathlib import Path

from feedstack.core.clock import Clock
from feedstack.core.errors import ConfigError
from feedstack.core.spec import Spec, load_spec
from feedstack.features.item_cache import ItemFeatureCache
from feedstack.features.online_store import open_online_features
from feedstack.ingest.pipeline import Ingestor
from feedstack.ingest.validate import Validator
from feedstack.monitor.metrics import ServingMetrics
from feedstack.serve.clock import LogClock
from feedstack.serve.experiments import ExperimentRouter
from feedstack.serve.models import ServingModels, load_models
from feedstack.serve.pipeline import FeedPipeline
from feedstack.storage.candidate_cache import open_candidate_cache
from feedstack.storage.eventlog import open_event_log


def build_service(
    project: Path,
    *,
    spec: Spec | None = None,
    metrics: ServingMetrics | None = None,
    clock: Clock | None = None,
    background: bool = True,
    require_model: bool = False,
) -> FeedPipeline:
    """The project's feed service: its models (the rollout's champion and challenger, else the
    newest; the running A/B test's arms), candidate cache, online store, in-memory item features
    (replayed from the event log, then followed by a background thread when ``background``) and
    ingest pipeline.

    ``clock`` (tests) overrides the spec's ``serve.clock``. Without a trained model it still
    answers, from the fallback lists, and reports not ready (``require_model`` makes that a
    ConfigError instead). Close it with ``close()``."""
    spec = spec or load_spec(project)
    budgets = spec.serve.budgets_ms(spec.latency)
    models: ServingModels | None
    try:
        models = load_models(project)
    except ConfigError:
        if require_model:
            raise
        models = None
    experiments = ExperimentRouter.load(project, models)
    store = open_online_features(
        spec.backends.online_features, project, read_timeout_s=budgets["user_features"] / 1000.0
    )
    cache = open_candidate_cache(
        spec.backends.candidate_cache, project, timeout_s=budgets["candidates"] / 1000.0
    )
    items = ItemFeatureCache.open(open_event_log(spec.backends.event_log, project))
    step_s = spec.serve.log_clock_max_step_s
    ingestor = Ingestor.from_spec(spec, project, clock)
    feed_clock: Clock | None = clock
    if clock is None and spec.serve.clock == "log":
        log_clock = LogClock(items, step_s)
        # API events are checked against the serving clock: one stamped far ahead of the log
        # (today's date in a simulated world) is rejected, naming event_time and this key.
        ingestor.validator = Validator(spec.ingest, log_clock, step_s, "serve.log_clock_max_step_s")
        feed_clock = log_clock
    return FeedPipeline(
        spec,
        models,
        cache,
        store,
        items,
        ingestor=ingestor,
        metrics=metrics,
        clock=feed_clock,
        background=background,
        experiments=experiments,
    )
