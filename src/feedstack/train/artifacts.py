"""The trained news model on disk: safe formats only, everything needed to rebuild and audit it.

    PROJECT/models/<version>/
      model.json           what this is: feature names (in the ranker's column order), sources,
                           blend and history settings, params, the examination curve, data
                           hashes, the feature-definitions version, metrics, the selection table
      ranker/              LightGBM text model + ranker.json (models/rank/lgbm.py)
      sources/<name>/      source.json + arrays.npz per candidate source (allow_pickle=False)
      check.npz            known inputs and the scores they gave at training time: a loaded
                           model must reproduce them bit for bit

Nothing is pickled. ``load`` reopens the folder; ``verify`` recomputes the check scores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from feedstack.core.errors import InputError
from feedstack.models.candidates.base import CandidateSource, read_meta
from feedstack.models.candidates.content import ContentSource
from feedstack.models.candidates.covisit import CovisitSource
from feedstack.models.candidates.trending import TrendingSource
from feedstack.models.rank.lgbm import Ranker

FORMAT_VERSION = 1
MODEL_FILE = "model.json"
CHECK_FILE = "check.npz"
KIND = "news-two-stage"
# The news sources by ``kind`` (models/candidates/__init__.py's registry does not list them yet).
SOURCE_KINDS: dict[str, type[CandidateSource]] = {
    "covisit": CovisitSource,
    "content": ContentSource,
    "trending": TrendingSource,
}


@dataclass
class LoadedModel:
    folder: Path
    meta: dict[str, Any]
    sources: list[CandidateSource]
    ranker: Ranker
    check: dict[str, npt.NDArray[Any]]


def version_name(data_hash: str, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"news-{stamp}-{data_hash[:8]}"


def save(
    folder: Path,
    meta: dict[str, Any],
    sources: list[CandidateSource],
    ranker: Ranker,
    check: dict[str, npt.NDArray[Any]],
) -> Path:
    """Write the model into ``folder`` (created; must not exist yet) and return it."""
    if folder.exists():
        raise InputError(f"{folder} exists already: model versions are never overwritten")
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True)
    entries = []
    for source in sources:
        source.save(tmp / "sources" / source.name)
        entries.append({"name": source.name, "kind": source.kind, "path": f"sources/{source.name}"})
    ranker.save(tmp / "ranker")
    np.savez(tmp / CHECK_FILE, allow_pickle=False, **check)
    doc = {"format": FORMAT_VERSION, "kind": KIND, **meta, "sources": entries, "ranker": "ranker"}
    (tmp / MODEL_FILE).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    tmp.rename(folder)  # a reader sees a whole model or none
    return folder


def load(folder: Path) -> LoadedModel:
    try:
        meta: dict[str, Any] = json.loads((folder / MODEL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder}: not a saved news model ({exc})") from None
    if meta.get("format") != FORMAT_VERSION or meta.get("kind") != KIND:
        raise InputError(f"{folder}: a {meta.get('kind')!r} model, format {meta.get('format')!r}")
    sources = []
    for entry in meta["sources"]:
        path = folder / entry["path"]
        kind = read_meta(path)["kind"]
        if kind not in SOURCE_KINDS:
            raise InputError(f"{path}: unknown source kind {kind!r}; known: {sorted(SOURCE_KINDS)}")
        sources.append(SOURCE_KINDS[kind].load(path))
    with np.load(folder / CHECK_FILE, allow_pickle=False) as npz:
        check = {key: npz[key] for key in npz.files}
    return LoadedModel(folder, meta, sources, Ranker.load(folder / meta["ranker"]), check)


def check_arrays(
    sources: list[CandidateSource],
    ranker: Ranker,
    features: npt.NDArray[np.float32],
    users: npt.NDArray[np.int64],
    history: sp.csr_matrix,
) -> dict[str, npt.NDArray[Any]]:
    """Inputs (candidate rows, some users and their histories) and what the model gave for
    them: the ranker's scores and every source feature."""
    history = sp.csr_matrix(history, dtype=np.float32)
    out: dict[str, npt.NDArray[Any]] = {
        "features": features,
        "scores": ranker.predict(features, num_threads=1),
        "users": users,
        "history_data": history.data,
        "history_indices": history.indices,
        "history_indptr": history.indptr,
        "history_shape": np.asarray(history.shape, dtype=np.int64),
    }
    for source in sources:
        for name, values in source.feature_scores(users, history).items():
            out[f"source:{name}"] = np.ascontiguousarray(values)
    return out


def verify(model: LoadedModel) -> dict[str, bool]:
    """Recompute every check array from the loaded model: name -> reproduced exactly."""
    c = model.check
    shape = tuple(int(x) for x in c["history_shape"])
    history = sp.csr_matrix(
        (c["history_data"], c["history_indices"], c["history_indptr"]), shape=shape
    )
    out = {"scores": bool(np.array_equal(model.ranker.predict(c["features"]), c["scores"]))}
    for source in model.sources:
        for name, values in source.feature_scores(c["users"], history).items():
            out[f"source:{name}"] = bool(np.array_equal(values, c[f"source:{name}"]))
    return out
