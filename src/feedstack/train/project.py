"""Train the news recommender of a project: read its offline event copy, fit and select, save
the model under ``PROJECT/models/<version>/``. The CLI (``feedstack train``) and the demo both
call this, and record the result in ``PROJECT/measurements/``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from feedstack.core.spec import load_spec
from feedstack.storage.offline import open_offline_store
from feedstack.train import artifacts, selection
from feedstack.train.clean_log import load_clean_log
from feedstack.train.news import NewsConfig, run
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
) -> dict[str, Any]:
    spec = load_spec(root)
    extra: dict[str, Any] = {} if sizes is None else {"sizes": sizes}
    config = NewsConfig(
        warmup_hours=warmup_hours,
        eval_hours=eval_hours,
        latency_repeats=repeats,
        seed=seed,
        **extra,
    )
    offline_root = open_offline_store(spec.backends.offline_store, root).root
    log, quarantined = load_clean_log(root, spec, offline_root, "train")
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
        "version": version,
        "model_dir": str(folder),
        **training.result,
        "quarantined": quarantined.quarantined,  # rows set aside (dead-letter store)
    }
