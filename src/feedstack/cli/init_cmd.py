"""``feedstack init DIR``: write the reference-case spec into a new project folder."""

from __future__ import annotations

from pathlib import Path

import typer

from feedstack.cli.common import JsonOption, cli_errors, console, emit_json
from feedstack.core.spec import load_spec, write_default_spec


def init(
    directory: Path = typer.Argument(..., help="Project folder to create (or reuse)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing feedstack.yaml."),
    as_json: bool = JsonOption,
) -> None:
    """Create a project: DIR/feedstack.yaml with the reference case's defaults."""
    with cli_errors():
        path = write_default_spec(directory, overwrite=force)
        spec = load_spec(path)  # prove what we wrote loads
        if as_json:
            emit_json({"spec": str(path), "name": spec.name, **spec.model_dump(mode="json")})
        else:
            console.print(f"wrote {path}")
