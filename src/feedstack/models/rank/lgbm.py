"""The re-ranker: LightGBM LambdaRank (Burges, "From RankNet to LambdaRank to LambdaMART", MSR-TR
2010) over candidate rows grouped by user.

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

from feedstack.core.errors import InputError

FloatMatrix = npt.NDArray[np.float32]
FORMAT_VERSION = 1
MODEL_FILE = "model.txt"
META_FILE = "ranker.json"

# Chosen on the Gowalla tuning split (see train/twostage.py): small trees beat large ones
# (num_leaves 15 vs 63 vs 255), the labels being few and noisy.
DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "lambdarank",
    "metric": "ndcg",
    "eval_at": [20],
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambdarank_truncation_level": 20,
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
    ) -> Ranker:
        """Fit on rows grouped by user (``group_sizes`` consecutive rows each).

        Groups without a positive label are dropped: LambdaRank draws no gradient from them.
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
    """A fitted LambdaRank model: ``predict(features) -> scores`` (higher = better)."""

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
            raise InputError(
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
            raise InputError(f"{folder}: not a saved ranker ({exc})") from None
        if meta.get("format") != FORMAT_VERSION:
            raise InputError(f"{folder}: ranker format {meta.get('format')!r}")
        booster = lgb.Booster(model_str=text)
        return cls(
            booster, meta["feature_names"], meta["params"], meta["metrics"], meta["data_hash"]
        )
