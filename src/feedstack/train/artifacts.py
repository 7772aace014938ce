"""A trained model on disk (either recipe): safe formats only, everything needed to rebuild and
audit it.

    PROJECT/models/<version>/
      model.json           what this is: feature names (in the ranker's column order), sources,
                           blend and history settings, params, the examination curve, data
                           hashes, the feature-definitions version, metrics, the selection table
      ranker/              LightGBM text model + ranker.json (models/rank/lgbm.py)
      sources/<name>/      source.json + arrays.npz per candidate source (allow_pickle=False)
      check.npz            known inputs and the scores they gave at training time: a loaded
                           model must reproduce them bit for bit
      items.npz            interactions models only: the item ids of the model's columns and
                           the most popular items (the fallback of a user with no list)

``kind`` says the recipe: ``news-two-stage`` (train/news.py) or ``interactions-two-stage``
(train/interactions.py). Sources reopen by their own ``kind`` (models/candidates/__init__.py).

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
from feedstack.models.candidates import KINDS as SOURCE_KINDS
from feedstack.models.candidates import load_source
from feedstack.models.candidates.base import CandidateSource, read_meta
from feedstack.models.rank.lgbm import Ranker

FORMAT_VERSION = 1
MODEL_FILE = "model.json"
CHECK_FILE = "check.npz"
ITEMS_FILE = "items.npz"
KIND = "news-two-stage"
INTERACTIONS_KIND = "interactions-two-stage"
KINDS = (KIND, INTERACTIONS_KIND)


@dataclass
class LoadedModel:
    folder: Path
    meta: dict[str, Any]
    sources: list[CandidateSource]
    ranker: Ranker
    check: dict[str, npt.NDArray[Any]]
    items: dict[str, npt.NDArray[Any]] | None = None

    @property
    def kind(self) -> str:
        return str(self.meta["kind"])


def version_name(data_hash: str, now: datetime | None = None, prefix: str = "news") -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{prefix}-{stamp}-{data_hash[:8]}"


def version_key(name: str) -> tuple[str, str]:
    """Sort key of version names, oldest first, whatever the recipe prefix: the UTC stamp."""
    _, _, rest = name.partition("-")
    return (rest, name)


def save(
    folder: Path,
    meta: dict[str, Any],
    sources: list[CandidateSource],
    ranker: Ranker,
    check: dict[str, npt.NDArray[Any]],
    kind: str = KIND,
    items: dict[str, npt.NDArray[Any]] | None = None,
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
    if items is not None:
        np.savez(tmp / ITEMS_FILE, allow_pickle=False, **items)
    doc = {"format": FORMAT_VERSION, "kind": kind, **meta, "sources": entries, "ranker": "ranker"}
    (tmp / MODEL_FILE).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    tmp.rename(folder)  # a reader sees a whole model or none
    return folder


def load(folder: Path) -> LoadedModel:
    try:
        meta: dict[str, Any] = json.loads((folder / MODEL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder}: not a saved model ({exc})") from None
    if meta.get("format") != FORMAT_VERSION or meta.get("kind") not in KINDS:
        raise InputError(f"{folder}: a {meta.get('kind')!r} model, format {meta.get('format')!r}")
    sources = []
    for entry in meta["sources"]:
        path = folder / entry["path"]
        kind = read_meta(path)["kind"]
        if kind not in SOURCE_KINDS:
            raise InputError(f"{path}: unknown source kind {kind!r}; known: {sorted(SOURCE_KINDS)}")
        sources.append(load_source(path))
    with np.load(folder / CHECK_FILE, allow_pickle=False) as npz:
        check = {key: npz[key] for key in npz.files}
    items = None
    if (folder / ITEMS_FILE).is_file():
        with np.load(folder / ITEMS_FILE, allow_pickle=False) as npz:
            items = {key: npz[key] for key in npz.files}
    ranker = Ranker.load(folder / meta["ranker"])
    return LoadedModel(folder, meta, sources, ranker, check, items)


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
