"""``feedstack lineage VERSION``: which events, feature definitions and code produced a model.

VERSION is a model folder name, an MLflow version number or an alias (champion, challenger).
A folder under PROJECT/models/ that is not registered yet is registered first.
"""

from __future__ import annotations

from pathlib import Path

import typer

from feedstack.cli.common import (
    JsonOption,
    ProjectOption,
    cli_errors,
    console,
    emit_json,
    project_dir,
)


def lineage(
    version: str = typer.Argument(..., help="Folder name, MLflow version number or alias."),
    project: Path | None = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """The lineage of a model version: data, event range, features, code, params, metrics."""
    from feedstack.cli.deploy_cmd import register
    from feedstack.core.spec import load_spec
    from feedstack.registry.mlflow_registry import ALIASES, MlflowRegistry

    with cli_errors():
        root = project_dir(project)
        spec = load_spec(root)
        local = root / "models" / version
        if version not in ALIASES and not version.isdigit() and (local / "model.json").is_file():
            reg = register(root, spec, [version])
        else:
            reg = MlflowRegistry.from_spec(root, spec)
        out = reg.lineage(version)
        if as_json:
            emit_json(out)
        else:
            console.print_json(data=out)
