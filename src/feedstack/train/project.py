"""Train a project's recommender: read its offline event copy, pick the recipe (``--recipe`` or
the spec's ``train.recipe``; ``auto``: ``news`` when the log has impressions and article text,
``interactions`` otherwise), fit and select, save the model under ``PROJECT/models/<version>/``.
The CLI (``feedstack train``) and the demo both call this, and record the result in
``PROJECT/measurements/``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from feedstack.core.errors import InputError
from feedstack.core.spec import RECIPES, load_spec
from feedstack.models.candidates.als import ALSTrainer
from feedstack.storage.offline import open_offline_store
from feedstack.train import artifacts, selection
from feedstack.train.clean_log import load_clean_log
from feedstack.train.news import NewsConfig, run
from feedstack.train.newslog import NewsLog
from feedstack.train.slates import RankerSize


def train_project(
    root: Path,
    *,
    warmup_hours: float = 24.0,
    eval_hours: float = 24.0,
    sizes: tuple[RankerSize, ...] | None = None,
    repeats: int = 300,
    seed: int = 0,
    oracle: Any = None,
    say: Callable[[str], None] | None = None,
    recipe: str | None = None,
) -> dict[str, Any]:
    spec = load_spec(root)
    chosen = recipe or spec.train.recipe
    if chosen not in RECIPES:
        raise InputError(f"--recipe: unknown recipe {chosen!r}; valid: {', '.join(RECIPES)}")
    extra: dict[str, Any] = {} if sizes is None else {"sizes": sizes}
    news = spec.train.news
    offered = (
        *(("als",) if news.offer_als else ()),
        *(("gfcf",) if news.offer_graph_filter else ()),
    )
    r = spec.train.interactions
    als = ALSTrainer(
        factors=news.als_factors,
        iterations=r.als_iterations,
        regularization=r.als_regularization,
        alpha=r.als_alpha,
    )
    config = NewsConfig(
        offered=offered,
        min_unique_recall=news.min_unique_recall,
        als=als,
        max_age_h=spec.serve.max_age_h,
        candidates=spec.serve.candidates_per_user,
        warmup_hours=warmup_hours,
        eval_hours=eval_hours,
        latency_repeats=repeats,
        seed=seed,
        **extra,
    )
    offline_root = open_offline_store(spec.backends.offline_store, root).root
    log, quarantined = load_clean_log(root, spec, offline_root, "train")
    if chosen == "auto":
        chosen = auto_recipe(log)
    if chosen == "interactions":
        from feedstack.train import interactions

        out = interactions.train(log, spec, root / "models", repeats=repeats, seed=seed, say=say)
        return {**out, "quarantined": quarantined.quarantined}
    if log.impressions.n == 0:
        raise InputError(
            "recipe news: the log has no impressions (nothing to train a news ranker on); "
            "use --recipe interactions (or auto) for a log of clicks"
        )
    training = run(
        log, config, selection.budget_ms(spec), say=say or (lambda _: None), oracle=oracle
    )
    version = artifacts.version_name(training.result["training_rows_hash"])
    folder = artifacts.save(
        root / "models" / version,
        {"version": version, **training.meta()},
        training.sources,
        training.ranker,
        training.check,
    )
    return {
        "recipe": "news",
        "version": version,
        "model_dir": str(folder),
        **training.result,
        "quarantined": quarantined.quarantined,  # rows set aside (dead-letter store)
    }


def auto_recipe(log: NewsLog) -> str:
    """``news`` when the log has impressions and article text, ``interactions`` otherwise."""
    has_text = any(t.strip() for t in log.texts[:1000]) if log.impressions.n else False
    return "news" if log.impressions.n > 0 and has_text else "interactions"
