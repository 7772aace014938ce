"""``feedstack deploy VERSION --canary 10``: start a canary of a trained model.

The version is a model folder under PROJECT/models/. Both it and the champion are registered in
MLflow (once; with the event range of their training run when ``feedstack train`` recorded it)
and get the ``challenger`` and ``champion`` aliases; then PROJECT/registry/rollout.json sends
``--canary`` % of users (a stable hash of user id and a salt tied to the version) to it. The
rollout controller takes it from there (``feedstack rollout step``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from feedstack.cli.common import (
    JsonOption,
    ProjectOption,
    cli_errors,
    console,
    emit_json,
    project_dir,
)


def train_windows(root: Path, version: str) -> dict[str, float] | None:
    """The event windows of the ``feedstack train`` run that produced ``version``, if recorded."""
    from feedstack.storage import measurements

    for rec in measurements.latest_by(root / "measurements", "train", "version"):
        if rec["result"].get("version") == version:
            windows: dict[str, float] | None = rec["result"].get("windows")
            return windows
    return None


def register(root: Path, spec: Any, versions: list[str]) -> Any:
    """Register the model folders (no-op for those already in) and return the registry."""
    from feedstack.registry.mlflow_registry import MlflowRegistry, model_folder

    reg = MlflowRegistry.from_spec(root, spec)
    for v in versions:
        reg.register(model_folder(root, v), windows=train_windows(root, v))
    return reg


def deploy(
    version: str = typer.Argument(..., help="Model version: a folder under PROJECT/models/."),
    canary: float = typer.Option(
        10.0, "--canary", min=0.001, max=99.999, help="Percent of users sent to the new version."
    ),
    champion: str | None = typer.Option(
        None, "--champion", help="Version serving everyone else (default: the current champion)."
    ),
    registry: bool = typer.Option(
        True, "--registry/--no-registry", help="Register both versions in MLflow, set aliases."
    ),
    project: Path | None = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Deploy VERSION as a canary to --canary % of users."""
    from feedstack.core.spec import load_spec
    from feedstack.registry.mlflow_registry import model_folder
    from feedstack.registry.rollout import RolloutPolicy
    from feedstack.registry.runner import RolloutRunner

    with cli_errors():
        root = project_dir(project)
        spec = load_spec(root)
        now = datetime.now(UTC)
        runner = RolloutRunner(root, RolloutPolicy.from_spec(spec))
        planned = runner.plan_deploy(version, canary / 100, now, champion)
        model_folder(root, version)
        model_folder(root, planned.champion)
        out: dict[str, Any] = {}
        if registry:
            # Registered before the state changes: a registry failure leaves no canary running.
            reg = register(root, spec, [planned.champion, version])
            out["registry"] = {
                "champion": reg.set_alias("champion", planned.champion).to_json(),
                "challenger": reg.set_alias("challenger", version).to_json(),
            }
        state = runner.deploy(version, canary / 100, now, planned.champion)
        out = {
            "champion": state.champion,
            "challenger": state.challenger,
            "canary_pct": canary,
            "salt": state.salt,
            **out,
        }
        if as_json:
            emit_json(out)
        else:
            console.print(
                f"canary: {canary:g} % of users -> {version} (champion {state.champion})",
                highlight=False,
            )
