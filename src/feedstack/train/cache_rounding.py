"""Candidate features as the candidate cache returns them, for measuring a ranker on them.

The cache stores each user's list with some columns quantized (storage/candidate_codec.py); the
ranker reads the decoded values. ``cache_rounded`` applies the same per-list codes to a batch of
candidates, so the offline evaluation scores every ranker twice: on the replay's exact features
and on what serving will read (``<ranker>@cache`` in the scoreboard).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from feedstack.models.candidates.blend import Candidates
from feedstack.models.kernels import FloatMatrix
from feedstack.storage.candidate_codec import round_trip_columns
from feedstack.train.candidate_cache import first_stage

CACHE_SUFFIX = "@cache"


def cache_rounded(
    cands: Candidates, features: FloatMatrix, quotas: Mapping[str, int]
) -> FloatMatrix:
    """``features`` ([rows, blend + context]) with the blend's columns round-tripped through the
    cache's codes, one user's list at a time (the first-stage score too: a column may be coded
    relative to it); context columns are computed at serve time and stay as they are."""
    score, _ = first_stage(cands, dict(quotas))
    out = np.array(features, dtype=np.float32, copy=True)
    nb = len(cands.feature_names)
    for b in range(cands.users.size):
        lo, hi = int(cands.indptr[b]), int(cands.indptr[b + 1])
        if hi == lo:
            continue
        cols = [score[lo:hi]] + [features[lo:hi, j] for j in range(nb)]
        back = round_trip_columns(cols)
        out[lo:hi, :nb] = np.stack(back[1:], axis=1)
    return out


def cache_rounding_effect(metrics: Mapping[str, Any], ranker: str, k: int) -> dict[str, Any]:
    """The ranker on exact features vs on the cache's values: NDCG@k on the logged clicks and
    (a simulated world) expected clicks, each with its relative change."""
    models = metrics["models"]
    cached = ranker + CACHE_SUFFIX
    out: dict[str, Any] = {"ranker": ranker}
    pairs = [(f"ndcg@{k}", models.get(ranker, {}), models.get(cached, {}))]
    expected = metrics.get("expected_clicks") or {}
    pairs.append(("expected_clicks", expected, {"expected_clicks": expected.get(cached)}))
    for name, exact_row, cache_row in pairs:
        exact = exact_row.get(name) if name != "expected_clicks" else exact_row.get(ranker)
        approx = cache_row.get(name)
        if exact is None or approx is None:
            continue
        out[name] = {
            "exact": round(float(exact), 5),
            "cache": round(float(approx), 5),
            "relative_change": round((float(approx) - float(exact)) / float(exact), 5)
            if exact
            else 0.0,
        }
    return out
