"""A/B tests in the serving path: the running experiment's arms, each with its ranker.

    router = ExperimentRouter.load(project, models)     # None when no experiment is running
    routed = router.route(user_id)                      # (experiment, arm, model or None)

The experiment (registry/experiment.py) assigns each user an arm by a stable hash of (salt, user
id): the same arm on every request, worker and replica. An arm's ``version`` is a model folder
under PROJECT/models/ (``champion`` and ``challenger`` were resolved to folders when it started);
an arm with ``settings: {policy: popular}`` serves the in-memory fallback lists (trending,
popular-by-region, fresh) unranked: the non-personalized baseline. The pipeline logs the
experiment and arm with each impression, which is what ``feedstack experiment status`` analyses.

A running canary (serve/models.py) keeps its users: the experiment splits the others, so neither
test's arms mix. The experiment is read when the server starts: start or stop one, then restart
the servers (as for a deploy).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from feedstack.core.errors import ConfigError, InputError
from feedstack.registry.experiment import Arm, Experiment, running_experiment
from feedstack.registry.state import load_rollout
from feedstack.serve.models import ServingModel, ServingModels, load_ranker, newest_version

POPULAR = "popular"  # settings {"policy": "popular"}: the fallback lists, no ranker
ALIASES = ("champion", "challenger")


@dataclass(frozen=True)
class Routed:
    experiment: str
    arm: str
    model: ServingModel | None  # None: the arm serves the fallback lists (policy popular)
    version: str  # what the impression logs as model_version


def arm_policy(arm: Arm) -> str:
    """``ranker`` (the arm's model version ranks) or ``popular`` (the fallback lists)."""
    policy = str(arm.settings.get("policy", "ranker"))
    if policy not in ("ranker", POPULAR):
        raise InputError(
            f"arm {arm.name!r}: settings.policy must be ranker or popular, got {policy!r}"
        )
    return policy


def resolve_version(project: Path, version: str) -> str:
    """A model folder name for ``champion``, ``challenger`` (the rollout state's, else the newest
    model for champion) or a folder name, checked to exist."""
    state = load_rollout(project)
    if version == "champion":
        return state.champion if state is not None else newest_version(project)
    if version == "challenger":
        if state is None or state.challenger is None:
            raise InputError("arm version 'challenger': no challenger deployed (feedstack deploy)")
        return state.challenger
    if not (project / "models" / version).is_dir():
        raise InputError(f"arm version {version!r}: no model folder {project / 'models' / version}")
    return version


@dataclass(frozen=True)
class ExperimentRouter:
    experiment: Experiment
    models: dict[str, ServingModel | None]  # arm name -> its ranker (None: popular)

    @classmethod
    def load(cls, project: Path, serving: ServingModels | None) -> ExperimentRouter | None:
        """The running experiment with every arm's ranker loaded (the champion's reused), or
        None. ConfigError when an arm's model cannot serve: a server must not start half-set."""
        exp = running_experiment(project)
        if exp is None:
            return None
        loaded = (
            {}
            if serving is None
            else {m.version: m for m in (serving.champion, serving.challenger) if m}
        )
        arms: dict[str, ServingModel | None] = {}
        for arm in exp.arms:
            if arm_policy(arm) == POPULAR:
                arms[arm.name] = None
                continue
            try:
                version = resolve_version(project, arm.version)
            except InputError as exc:
                raise ConfigError(f"experiment {exp.name!r}: {exc}") from None
            if version not in loaded:
                loaded[version] = load_ranker(project, version)
            arms[arm.name] = loaded[version]
        return cls(exp, arms)

    def route(self, user_id: str) -> Routed:
        arm = self.experiment.assign(user_id)
        model = self.models[arm.name]
        version = model.version if model is not None else POPULAR
        return Routed(self.experiment.name, arm.name, model, version)

    @property
    def rankers(self) -> list[ServingModel]:
        return [m for m in self.models.values() if m is not None]
