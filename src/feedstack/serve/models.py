"""The rankers a serving process holds: the champion and, during a canary, the challenger.

Which versions serve comes from the rollout state (registry/state.py); with none deployed yet,
the newest model under PROJECT/models/ serves alone. A version is loaded once; only its ranker is
kept (the candidate sources ran in the batch job that filled the candidate cache), compiled to
machine code (models/rank/compiled.py; the compiled object cached under PROJECT/.cache/rankers).
An interactions model (train/interactions.py) also brings how deep its ranker re-orders, whether
it is used at all, and its most popular items (the fallback of a user with no list).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from feedstack.core.errors import ConfigError
from feedstack.models.rank.compiled import compile_ranker
from feedstack.models.rank.lgbm import Ranker
from feedstack.registry.assignment import in_canary
from feedstack.registry.state import RolloutState, load_rollout
from feedstack.train.artifacts import (
    INTERACTIONS_KIND,
    ITEMS_FILE,
    KIND,
    MODEL_FILE,
    version_key,
)


@dataclass(frozen=True)
class ServingModel:
    version: str
    ranker: Ranker
    kind: str = KIND
    depth: int = 0  # interactions: candidates the ranker re-orders (models/rank/order.py)
    use_ranker: bool = True
    popular: tuple[str, ...] = ()  # interactions: most popular item ids, best first

    @property
    def interactions(self) -> bool:
        return self.kind == INTERACTIONS_KIND


@dataclass(frozen=True)
class ServingModels:
    champion: ServingModel
    challenger: ServingModel | None = None
    canary_share: float = 0.0
    salt: str = "canary"

    def route(self, user_id: str) -> tuple[str, ServingModel]:
        """(arm, model) for this user: stable per user (a hash, registry/assignment.py)."""
        if self.challenger is not None and in_canary(user_id, self.salt, self.canary_share):
            return "challenger", self.challenger
        return "champion", self.champion

    @property
    def versions(self) -> dict[str, str]:
        out = {"champion": self.champion.version}
        if self.challenger is not None:
            out["challenger"] = self.challenger.version
        return out


def model_versions(project: Path) -> list[str]:
    """Saved model versions, oldest first (names start with their UTC training time)."""
    root = project / "models"
    if not root.is_dir():
        return []
    found = (p.name for p in root.iterdir() if (p / MODEL_FILE).is_file())
    return sorted(found, key=version_key)


def newest_version(project: Path) -> str:
    versions = model_versions(project)
    if not versions:
        raise ConfigError(f"no trained model under {project / 'models'}; run `feedstack train`")
    return versions[-1]


def load_ranker(project: Path, version: str) -> ServingModel:
    folder = project / "models" / version
    meta = folder / MODEL_FILE
    if not meta.is_file():
        raise ConfigError(f"model {version!r}: no {meta}; known: {model_versions(project)}")
    ranker = compile_ranker(Ranker.load(folder / "ranker"), project / ".cache" / "rankers")
    doc = json.loads(meta.read_text(encoding="utf-8"))
    kind = str(doc.get("kind", KIND))
    if kind != INTERACTIONS_KIND:
        return ServingModel(version, ranker)
    with np.load(folder / ITEMS_FILE, allow_pickle=False) as npz:
        ids, popular = npz["item_ids"], npz["popular"]
    return ServingModel(
        version,
        ranker,
        kind,
        int(doc["depth"]),
        bool(doc.get("use_ranker", True)),
        tuple(str(i) for i in ids[popular].tolist()),
    )


def load_models(project: Path, rollout: RolloutState | None = None) -> ServingModels:
    """The rollout's champion and challenger, or the newest model when nothing was deployed."""
    state = rollout if rollout is not None else load_rollout(project)
    if state is None:
        return ServingModels(load_ranker(project, newest_version(project)))
    challenger = None if state.challenger is None else load_ranker(project, state.challenger)
    return ServingModels(
        load_ranker(project, state.champion), challenger, state.canary_share, state.salt
    )
