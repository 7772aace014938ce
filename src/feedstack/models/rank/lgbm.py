"""The re-ranker: LightGBM learning-to-rank over candidate rows grouped by user (LambdaRank,
Burges, "From RankNet to LambdaRank to LambdaMART", MSR-TR 2010, or the listwise XE-NDCG that
measured better here: see DEFAULT_PARAMS).

Trainer vs artifact: ``RankerTrainer.fit(rows) -> Ranker``; ``Ranker.save(folder)`` writes the
LightGBM text model (``model.txt``: thresholds printed with full precision, so a loaded model
reproduces every score bit for bit) and ``ranker.json`` (params, feature names, best iteration,
hash of the training rows, metrics). Nothing is pickled.

Prediction runs on one thread by default: on two busy cores ``num_threads=2`` made LightGBM
predict 6-8x slower (shared design/dependencies.md), and serving scores one user at a time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from feedstack.core.errors import DataError, InputError

FloatMatrix = npt.NDArray[np.float32]
FORMAT_VERSION = 1
MODEL_FILE = "model.txt"
META_FILE = "ranker.json"

# Chosen on the Gowalla tuning split (Recall/NDCG@20 of the whole pipeline; ±0.0005 between
# seeds): small trees beat large ones (num_leaves 15: 0.2094/0.1468, 63: 0.2070/0.1447, 255:
# 0.2008/0.1392), the labels being few and noisy; learning rate 0.05 over 0.1. LightGBM's listwise
# "rank_xendcg" (Bruch et al., "An Alternative Cross Entropy Loss for Learning-to-Rank", WWW 2020)
# beat "lambdarank" in NDCG@20 for each of 3 seeds (mean 0.1510 vs 0.1503, Recall@20 equal) and
# trains faster; "objective": "lambdarank" (with "lambdarank_truncation_level": 20) is the other.
DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "rank_xendcg",
    "metric": "ndcg",
    "eval_at": [20],
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "verbose": -1,
}


@dataclass(frozen=True, slots=True)
class RankerTrainer:
    """Boosting rounds stop early on held-out groups (``valid_fraction`` of them, by ``seed``)."""

    params: Mapping[str, Any] = field(default_factory=dict)  # overrides DEFAULT_PARAMS
    rounds: int = 500
    early_stopping: int = 50
    valid_fraction: float = 0.15
    num_threads: int = 0  # 0: LightGBM's default (all cores)
    seed: int = 0

    def fit(
        self,
        features: FloatMatrix,
        labels: npt.NDArray[np.float32],
        group_sizes: npt.NDArray[np.int64],
        feature_names: Sequence[str],
        baseline: FloatMatrix | None = None,
    ) -> Ranker:
        """Fit on rows grouped by user (``group_sizes`` consecutive rows each).

        Groups without a positive label are dropped: a ranking loss draws no gradient from them.
        ``baseline`` (a score per row, e.g. the first-stage order) is scored on the same
        held-out groups: ``metrics["beats_baseline"]`` says whether the model did better, so a
        caller can keep the baseline order where there is too little data to learn from.
        """
        import lightgbm as lgb

        features = np.ascontiguousarray(features, dtype=np.float32)
        labels = np.asarray(labels, dtype=np.float32)
        sizes = np.asarray(group_sizes, dtype=np.int64)
        if features.shape != (labels.size, len(feature_names)) or sizes.sum() != labels.size:
            raise InputError(
                f"ranker rows disagree: features {features.shape}, labels {labels.size}, "
                f"groups sum to {int(sizes.sum())}, {len(feature_names)} feature names"
            )
        row_group = np.repeat(np.arange(sizes.size), sizes)
        positives = np.bincount(row_group, weights=labels, minlength=sizes.size)
        useful = positives > 0
        if useful.sum() < 2:
            raise InputError("ranker needs at least 2 groups with a positive label")
        rng = np.random.default_rng(self.seed)
        valid = np.zeros(sizes.size, dtype=bool)
        n_valid = round(self.valid_fraction * useful.sum())
        if self.early_stopping > 0 and n_valid > 0:
            valid[rng.choice(np.flatnonzero(useful), n_valid, replace=False)] = True
        train = useful & ~valid

        params = {**DEFAULT_PARAMS, **self.params, "seed": self.seed}
        if self.num_threads > 0:
            params["num_threads"] = self.num_threads
        names = list(feature_names)
        train_rows = train[row_group]
        train_set = lgb.Dataset(
            features[train_rows],
            labels[train_rows],
            group=sizes[train],
            feature_name=names,
            free_raw_data=True,
        )
        callbacks: list[Any] = []
        valid_sets: list[Any] = []
        if valid.any():
            valid_rows = valid[row_group]
            valid_sets.append(
                lgb.Dataset(
                    features[valid_rows],
                    labels[valid_rows],
                    group=sizes[valid],
                    reference=train_set,
                )
            )
            callbacks.append(lgb.early_stopping(self.early_stopping, verbose=False))
        booster = lgb.train(
            params,
            train_set,
            num_boost_round=self.rounds,
            valid_sets=valid_sets,
            callbacks=callbacks,
        )
        best = int(booster.best_iteration) if booster.best_iteration > 0 else self.rounds
        metrics: dict[str, Any] = {
            "train_groups": int(train.sum()),
            "train_rows": int(train_rows.sum()),
            "valid_groups": int(valid.sum()),
            "best_iteration": best,
        }
        for name, value in booster.best_score.get("valid_0", {}).items():
            metrics[f"valid_{name}"] = float(value)
        if baseline is not None and valid.any():
            valid_rows = valid[row_group]
            x_valid = features[valid_rows]
            model_scores = np.asarray(booster.predict(x_valid, num_iteration=best), np.float32)
            at = int(params["eval_at"][0]) if "eval_at" in params else 20
            y_valid, sizes_valid = labels[valid_rows], sizes[valid]
            mine = group_ndcg(model_scores, y_valid, sizes_valid, at)
            theirs = group_ndcg(np.asarray(baseline)[valid_rows], y_valid, sizes_valid, at)
            metrics.update({"valid_model_ndcg": mine, "valid_baseline_ndcg": theirs})
            metrics["beats_baseline"] = bool(mine > theirs)
        h = hashlib.sha256()
        for arr in (features, labels, sizes):
            h.update(np.ascontiguousarray(arr).tobytes())
        model_text = booster.model_to_string(num_iteration=best)
        return Ranker(
            lgb.Booster(model_str=model_text),
            names,
            {k: v for k, v in params.items() if k != "num_threads"},
            metrics,
            h.hexdigest(),
        )


class Ranker:
    """A fitted ranking model: ``predict(features) -> scores`` (higher = better)."""

    def __init__(
        self,
        booster: Any,
        feature_names: Sequence[str],
        params: Mapping[str, Any],
        metrics: Mapping[str, Any],
        data_hash: str,
    ) -> None:
        self.booster = booster
        self.feature_names = list(feature_names)
        self.params = dict(params)
        self.metrics = dict(metrics)
        self.data_hash = data_hash

    def predict(self, features: FloatMatrix, num_threads: int = 1) -> FloatMatrix:
        if features.ndim != 2 or features.shape[1] != len(self.feature_names):
            raise DataError(
                f"ranker expects {len(self.feature_names)} features, got shape {features.shape}"
            )
        scores = self.booster.predict(features, num_threads=num_threads)
        return np.asarray(scores, dtype=np.float32)

    def importance(self) -> dict[str, float]:
        """Total split gain per feature: which signals the ranker uses."""
        gains = self.booster.feature_importance(importance_type="gain")
        return {n: float(g) for n, g in zip(self.feature_names, gains, strict=True)}

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MODEL_FILE).write_text(self.booster.model_to_string(), encoding="utf-8")
        meta = {
            "format": FORMAT_VERSION,
            "feature_names": self.feature_names,
            "params": self.params,
            "metrics": self.metrics,
            "data_hash": self.data_hash,
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> Ranker:
        import lightgbm as lgb

        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
            text = (folder / MODEL_FILE).read_text(encoding="utf-8")
        except (OSError, ValueError) as exc:
            raise DataError(f"{folder}: not a saved ranker ({exc})") from None
        if meta.get("format") != FORMAT_VERSION:
            raise DataError(f"{folder}: ranker format {meta.get('format')!r}")
        booster = lgb.Booster(model_str=text)
        return cls(
            booster, meta["feature_names"], meta["params"], meta["metrics"], meta["data_hash"]
        )


def group_ndcg(
    scores: FloatMatrix, labels: npt.NDArray[np.float32], sizes: npt.NDArray[np.int64], k: int
) -> float:
    """Mean NDCG@k (binary gains) over groups of consecutive rows; ties keep row order."""
    group = np.repeat(np.arange(sizes.size), sizes)
    order = np.lexsort((np.arange(scores.size), -scores, group))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    position = np.arange(scores.size) - np.repeat(starts, sizes)
    top = position < k
    gain = labels[order] / np.log2(position + 2.0)
    dcg = np.bincount(group[top], weights=gain[top], minlength=sizes.size)
    positives = np.bincount(group, weights=labels, minlength=sizes.size).astype(np.int64)
    ideal = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))])
    idcg = ideal[np.minimum(positives, k)]
    has = idcg > 0
    return float(np.mean(dcg[has] / idcg[has])) if has.any() else 0.0
