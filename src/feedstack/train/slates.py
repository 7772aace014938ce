"""Ranker training data from logged slates, and the LambdaRank fit with propensity weights.

A training row is a shown article that was also among the user's candidates at that time (the
ranker only ever orders candidates), with its logged position and whether it was clicked.
Candidates that were never shown are not rows: nobody looked at them, so they are neither
positive nor negative evidence.

Groups. Without debiasing, one group per clicked impression (its clicks are the positives).
With an examination curve e, one group per *click*: the clicked row plus the impression's
unclicked rows, weighted by 1 / e(p) of the click's position. LightGBM multiplies every row's
lambda gradient by its weight (rank_objective.hpp, ``weights_``), so each (clicked, unclicked)
pair gets the click's inverse propensity: the propensity-weighted pairwise loss of Joachims et
al. (WSDM 2017, eq. 7), with LambdaRank's ΔNDCG on top.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from feedstack.core.errors import InputError
from feedstack.models.rank.lgbm import Ranker
from feedstack.train.examination import ExaminationCurve

IntArray = npt.NDArray[np.int64]
F64Array = npt.NDArray[np.float64]
FloatMatrix = npt.NDArray[np.float32]


@dataclass
class LabelRows:
    """Rows gathered batch by batch; ``request`` ties the rows of one impression together."""

    feature_names: tuple[str, ...]
    parts: list[tuple[FloatMatrix, IntArray, IntArray, npt.NDArray[np.bool_]]] = field(
        default_factory=list
    )

    def add(
        self,
        features: FloatMatrix,
        request: IntArray,
        position: IntArray,
        clicked: npt.NDArray[np.bool_],
    ) -> None:
        self.parts.append((features, request, position, clicked))

    def arrays(self) -> tuple[FloatMatrix, IntArray, IntArray, npt.NDArray[np.bool_]]:
        if not self.parts:
            raise InputError("no training rows: is the label window empty?")
        p = self.parts
        return (
            np.concatenate([x[0] for x in p]),
            np.concatenate([x[1] for x in p]),
            np.concatenate([x[2] for x in p]),
            np.concatenate([x[3] for x in p]),
        )


@dataclass(frozen=True)
class Groups:
    """Rows in group order: ``rows`` indexes the LabelRows arrays (a row may repeat)."""

    rows: IntArray
    sizes: IntArray
    labels: npt.NDArray[np.float32]
    weights: npt.NDArray[np.float32]


def groups(
    request: IntArray,
    position: IntArray,
    clicked: npt.NDArray[np.bool_],
    curve: ExaminationCurve | None,
    clip: float = 20.0,
) -> Groups:
    """Groups as in the module docstring; impressions without a click are dropped."""
    order = np.lexsort((position, request))
    req, clk = request[order], clicked[order]
    starts = np.flatnonzero(np.r_[True, req[1:] != req[:-1]])
    sizes = np.diff(np.r_[starts, req.size])
    n_clicks = np.add.reduceat(clk.astype(np.int64), starts) if req.size else np.zeros(0)
    rows: list[IntArray] = []
    out_sizes: list[int] = []
    labels: list[npt.NDArray[np.float32]] = []
    weights: list[float] = []
    for g in np.flatnonzero(n_clicks > 0).tolist():
        span = order[starts[g] : starts[g] + sizes[g]]
        hit = clicked[span]
        if curve is None:
            rows.append(span)
            out_sizes.append(span.size)
            labels.append(hit.astype(np.float32))
            weights.extend([1.0] * span.size)
            continue
        misses = span[~hit]  # shown and not clicked, or never shown
        for click in span[hit].tolist():
            w = float(curve.weights(np.array([position[click]]), clip)[0])
            member = np.r_[click, misses]
            rows.append(member)
            out_sizes.append(member.size)
            labels.append(np.r_[np.float32(1.0), np.zeros(misses.size, np.float32)])
            weights.extend([w] * member.size)
    if not rows:
        raise InputError("no clicked impression among the training rows")
    return Groups(
        np.concatenate(rows).astype(np.int64),
        np.asarray(out_sizes, np.int64),
        np.concatenate(labels).astype(np.float32),
        np.asarray(weights, np.float32),
    )


@dataclass(frozen=True, slots=True)
class RankerSize:
    trees: int
    leaves: int

    @property
    def label(self) -> str:
        return f"{self.trees}x{self.leaves}"


# Fixed sizes, not early stopping: the model-selection table compares sizes as they will serve.
BASE_PARAMS: dict[str, Any] = {
    "objective": "lambdarank",
    "metric": "ndcg",
    "eval_at": [10],
    "lambdarank_truncation_level": 10,
    "learning_rate": 0.1,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}


def fit_ranker(
    features: FloatMatrix,
    g: Groups,
    feature_names: Sequence[str],
    size: RankerSize,
    *,
    seed: int = 0,
    num_threads: int = 1,
    extra: dict[str, Any] | None = None,
) -> tuple[Ranker, float]:
    """A LambdaRank model of ``size`` on the grouped rows; returns it and the fit seconds.

    One thread by default: on two cores shared with other work, LightGBM's OpenMP threads wait
    on each other (measured: a 300-tree fit took 12 s alone and 123 s with 2 threads on a
    busy machine)."""
    import lightgbm as lgb

    x = np.ascontiguousarray(features[g.rows], dtype=np.float32)
    params = {
        **BASE_PARAMS,
        "num_leaves": size.leaves,
        "seed": seed,
        "num_threads": num_threads,
        **(extra or {}),
    }
    started = time.perf_counter()
    data = lgb.Dataset(
        x, g.labels, group=g.sizes, weight=g.weights, feature_name=list(feature_names)
    )
    booster = lgb.train(params, data, num_boost_round=size.trees)
    seconds = time.perf_counter() - started
    h = hashlib.sha256()
    for arr in (x, g.labels, g.sizes, g.weights):
        h.update(np.ascontiguousarray(arr).tobytes())
    metrics = {"train_groups": int(g.sizes.size), "train_rows": int(x.shape[0])}
    saved = {k: v for k, v in params.items() if k != "num_threads"}
    saved["num_boost_round"] = size.trees
    model = lgb.Booster(model_str=booster.model_to_string())
    return Ranker(model, list(feature_names), saved, metrics, h.hexdigest()), seconds
