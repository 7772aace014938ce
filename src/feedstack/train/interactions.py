"""The ``interactions`` recipe: the two-stage model of train/twostage.py (item-item graph filter,
ALS, popular -> blend -> LightGBM on a held-out slice of each user's history) trained on a
project's own log of clicks, with no impressions and no article text needed.

It shares the news recipe's contract: the same candidate-source interface, blend and ranker,
model selection under the latency budget (train/selection.py), the same kind of model folder
(train/artifacts.py, kind ``interactions-two-stage``) and MLflow registration. ``feedstack
evaluate`` goes through ``fit_model``/``save_model`` too, so it measures what serves.

Settings: ``train.interactions`` of the spec; candidates per user: ``serve.candidates_per_user``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from feedstack.core.errors import InputError
from feedstack.core.spec import Spec
from feedstack.models.candidates.als import ALSTrainer
from feedstack.models.candidates.itemitem import ItemItemTrainer
from feedstack.models.candidates.popular import PopularTrainer
from feedstack.models.interactions import InteractionData, read_lightgcn
from feedstack.models.rank.lgbm import RankerTrainer
from feedstack.train import artifacts, latency, selection
from feedstack.train.newslog import NewsLog
from feedstack.train.twostage import (
    Reporter,
    SilentReporter,
    TwoStageConfig,
    TwoStageModel,
    evaluate,
    fit,
    ranker_latency,
)

Say = Callable[[str], None]
K = 20  # Recall/NDCG@20: the LightGCN protocol's cut-off
FEATURES_VERSION = "interactions-blend-1"  # the blend's features (models/candidates/blend.py)
POPULAR_KEPT = 1000  # most popular items kept in items.npz: the fallback of a cold user


def config_of(spec: Spec, seed: int = 0) -> TwoStageConfig:
    """The recipe's settings from the spec (``train.interactions``, ``serve``)."""
    r = spec.train.interactions
    als = ALSTrainer(
        factors=r.als_factors,
        iterations=r.als_iterations,
        regularization=r.als_regularization,
        alpha=r.als_alpha,
        seed=seed,
    )
    # Deterministic LightGBM (fixed threads, seed): a refit on the same data gives the same
    # model, and save -> load -> score gives the same order.
    ranker = RankerTrainer(
        params={"deterministic": True, "force_row_wise": True},
        num_threads=r.ranker_threads,
        seed=seed,
    )
    return TwoStageConfig(
        sources=(ItemItemTrainer(seed=seed), als, PopularTrainer()),
        candidates=spec.serve.candidates_per_user,
        quota_shares=dict(r.quota_shares),
        holdout=r.holdout,
        depth=r.depth,
        max_train_users=r.max_train_users,
        ranker=ranker,
        seed=seed,
    )


def log_interactions(log: NewsLog) -> InteractionData:
    """The log's clicks as a user x item matrix; ids are the log's user and article ids (the
    candidate build maps indices back through the same log)."""
    c = log.clicks
    data = InteractionData.from_pairs(c.user, c.item, log.n_users, log.n_items)
    return InteractionData(
        data.matrix, np.asarray(log.user_ids, dtype=str), np.asarray(log.article_ids, dtype=str)
    )


def check_enough(data: InteractionData, spec: Spec) -> None:
    """InputError naming what is missing when there is too little to train on."""
    need = spec.train.interactions.min_interactions
    users = int(np.sum(data.user_counts() >= 2))
    items = int(np.sum(data.item_counts() > 0))
    if data.nnz < need or users < 2 or items < 2:
        raise InputError(
            f"too few interactions to train: {data.nnz} distinct (user, item) clicks "
            f"(train.interactions.min_interactions = {need}), {users} users with at least 2 "
            f"(need 2), {items} items clicked (need 2); ingest more clicks first"
        )


def fit_model(
    data: InteractionData, config: TwoStageConfig, reporter: Reporter | None = None
) -> TwoStageModel:
    return fit(data, config, reporter or SilentReporter())


def measure(
    model: TwoStageModel, data: InteractionData, budget_ms: float, repeats: int
) -> dict[str, Any]:
    """Latency of the ranker on the head it re-orders, and the selection table (one ranker,
    the blend's order as the zero-cost alternative), through train/selection.py."""
    users = np.arange(min(200, data.n_users), dtype=np.int64)
    history = data.matrix[users]
    cands = model.blend().generate(users, history, exclude=history)
    head = cands.features[cands.positions() < model.config.depth]
    rankers = {"ranker": model.ranker}
    blocks = latency.blocks_of(head, model.config.depth)
    timing = latency.measure(rankers, blocks, repeats) if blocks else {}
    m = model.ranker.metrics
    scores = {"ranker": {f"ndcg@{K}": float(m.get("valid_model_ndcg", 0.0))}}
    fit_s = {"ranker": float(model.report.get("fit_seconds", 0.0))}
    if not timing:
        timing = {"ranker": {"p50_ms": 0.0, "p99_ms": 0.0, "mean_ms": 0.0}}
    table = selection.table(scores, rankers, fit_s, timing, budget_ms, K)
    return {
        "selection": table,
        "selected": selection.pick(table),
        "budget_ms": round(budget_ms, 4),
        "latency": {
            "rows": model.config.depth,
            "repeats": repeats,
            "num_threads": 1,
            "load_average_1m": latency.load_average(),
        },
        "blend_valid_ndcg": float(m.get("valid_baseline_ndcg", 0.0)),
        "ranker_used": bool(m.get("beats_baseline", True)),
    }


def model_meta(
    model: TwoStageModel, data: InteractionData, measured: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    """What model.json records beside the arrays (the keys the MLflow registry reads)."""
    cfg = model.config
    blend = cfg.blend_config()
    return {
        "feature_names": list(model.ranker.feature_names),
        "selected": measured["selected"],
        "blend": {"size": blend.size, "quotas": dict(blend.quotas)},
        "depth": cfg.depth,
        "use_ranker": measured["ranker_used"],
        "ranker_params": model.ranker.params,
        "features_version": FEATURES_VERSION,
        "log_hash": data.data_hash(),
        "training_rows_hash": model.ranker.data_hash,
        "metrics": {"ranker": model.ranker.metrics, **model.report.get("metrics", {})},
        "selection": measured["selection"],
        "config": {
            "recipe": "interactions",
            "sources": [s.name for s in model.sources],
            "candidates": cfg.candidates,
            "quotas": dict(blend.quotas),
            "depth": cfg.depth,
            "holdout": cfg.holdout,
            "refit": cfg.refit,
            "seed": cfg.seed,
        },
        **extra,
    }


def save_model(
    root: Path, model: TwoStageModel, data: InteractionData, meta: dict[str, Any]
) -> tuple[str, Path]:
    """Save under ``root/<version>`` (a new version name); returns (version, folder)."""
    version = artifacts.version_name(model.ranker.data_hash, prefix="interactions")
    users = np.arange(min(8, data.n_users), dtype=np.int64)
    history = data.matrix[users]
    cands = model.blend().generate(users, history, exclude=history)
    check = artifacts.check_arrays(model.sources, model.ranker, cands.features, users, history)
    popular = np.argsort(-data.item_counts(), kind="stable")[:POPULAR_KEPT]
    items: dict[str, npt.NDArray[Any]] = {
        "item_ids": np.asarray(data.item_ids).astype(str),
        "popular": popular.astype(np.int64),
    }
    folder = artifacts.save(
        root / version,
        {"version": version, **meta},
        model.sources,
        model.ranker,
        check,
        kind=artifacts.INTERACTIONS_KIND,
        items=items,
    )
    return version, folder


def loaded_model(loaded: artifacts.LoadedModel, config: TwoStageConfig) -> TwoStageModel:
    """A saved interactions model as a TwoStageModel (the order it serves; config for the
    blend settings and depth the folder records)."""
    meta = loaded.meta
    if loaded.kind != artifacts.INTERACTIONS_KIND:
        raise InputError(f"{loaded.folder}: a {loaded.kind!r} model, not an interactions one")
    size = int(meta["blend"]["size"])
    quotas = {str(k): int(v) for k, v in meta["blend"]["quotas"].items()}
    shares = {k: v / size for k, v in quotas.items()}
    cfg = replace(config, candidates=size, quota_shares=shares, depth=int(meta["depth"]))
    return TwoStageModel(list(loaded.sources), loaded.ranker, cfg, {})


def train(
    log: NewsLog,
    spec: Spec,
    models_root: Path,
    *,
    repeats: int = 300,
    seed: int = 0,
    say: Say | None = None,
) -> dict[str, Any]:
    """Fit, measure, select and save; the result ``train_project`` returns."""
    say = say or (lambda _m: None)
    started = time.perf_counter()
    data = log_interactions(log)
    check_enough(data, spec)
    config = config_of(spec, seed)
    say(f"interactions: {data.nnz} clicks of {data.n_users} users on {data.n_items} items")
    model = fit_model(data, config, _SayReporter(say))
    say("timing the ranker")
    measured = measure(model, data, selection.budget_ms(spec), repeats)
    windows = {"start": log.start_s, "eval": log.end_s, "end": log.end_s}
    meta = model_meta(model, data, measured, {"windows": windows})
    version, folder = save_model(models_root, model, data, meta)
    return {
        "recipe": "interactions",
        "version": version,
        "model_dir": str(folder),
        "windows": windows,
        "data": {
            "users": data.n_users,
            "items": data.n_items,
            "interactions": data.nnz,
            "label_users": model.report["label_users"],
            "ranker_rows": model.report["ranker_rows"],
        },
        **measured,
        "fit": {k: v for k, v in model.report.items() if k != "fit_seconds"},
        "features_version": FEATURES_VERSION,
        "log_hash": data.data_hash(),
        "training_rows_hash": model.ranker.data_hash,
        "config": meta["config"],
        "seconds": {
            "fit": round(float(model.report["fit_seconds"]), 2),
            "total": round(time.perf_counter() - started, 2),
        },
    }


class _SayReporter:
    """The two-stage trainer's stages as progress lines."""

    def __init__(self, say: Say) -> None:
        self._say = say

    def start(self, stage: str, total: int) -> None:
        self._say(f"{stage} ({total})")

    def advance(self, n: int) -> None:
        pass


def evaluate_split(
    train_path: Path,
    test_path: Path,
    models_root: Path,
    *,
    k: int = K,
    config: TwoStageConfig | None = None,
    reporter: Reporter | None = None,
    budget_ms: float = selection.DEFAULT_BUDGET_MS,
    repeats: int = 100,
) -> dict[str, Any]:
    """``feedstack evaluate`` on a LightGCN-format split: fit on train through this recipe,
    save the model under ``models_root``, load it back, check it reproduces its scores, and
    score the test users with the loaded model in the order a served feed has."""
    config = config or config_of(Spec())
    train_data, test = read_lightgcn(train_path, test_path)
    check_enough(train_data, Spec())
    fitted = fit_model(train_data, config, reporter)
    measured = measure(fitted, train_data, budget_ms, repeats)
    meta = model_meta(fitted, train_data, measured, {"data": {"train": str(train_path)}})
    began = time.perf_counter()
    version, folder = save_model(models_root, fitted, train_data, meta)
    fit_report = dict(fitted.report)
    del fitted  # what is scored is what was saved
    loaded = artifacts.load(folder)
    verified = artifacts.verify(loaded)
    if not all(verified.values()):
        bad = sorted(name for name, ok in verified.items() if not ok)
        raise InputError(f"{folder}: the loaded model does not reproduce {bad}")
    model = loaded_model(loaded, config)
    save_load_s = time.perf_counter() - began
    result = evaluate(model, train_data, test, k, reporter)
    users = np.arange(min(200, train_data.n_users), dtype=np.int64)
    result["ranker_latency_ms"] = ranker_latency(model, train_data, users)
    importance = model.ranker.importance()
    total = sum(importance.values()) or 1.0
    return {
        **result,
        "model_version": version,
        "artifact": str(folder),
        "verified": verified,
        "fit_seconds": float(fit_report.pop("fit_seconds")),
        "save_load_seconds": round(save_load_s, 2),
        "fit": fit_report,
        "selection": measured["selection"],
        "data": {
            "train": str(train_path),
            "test": str(test_path),
            "users": train_data.n_users,
            "items": train_data.n_items,
            "train_pairs": train_data.nnz,
            "test_pairs": test.nnz,
        },
        "config": meta["config"],
        "ranker_importance": {n: round(g / total, 4) for n, g in importance.items()},
    }
