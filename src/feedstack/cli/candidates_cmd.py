"""``feedstack candidates build``: fill the candidate cache from a trained model.

Every user of the log gets their top candidates (the model's blend, as of just after the last
logged event) with the first-stage ranking features, written to ``backends.candidate_cache``
(embedded SQLite by default, Redis in production): what the server reads, once per request.
The result (users, bytes per user, seconds) is also recorded under ``PROJECT/measurements/``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from feedstack.cli.common import (
    JsonOption,
    ProjectOption,
    cli_errors,
    console,
    project_dir,
    record_measurement,
)

app = typer.Typer(help="The per-user candidate cache the server reads.", no_args_is_help=True)


@app.command("build")
def build(
    project: Path | None = ProjectOption,
    model: str | None = typer.Option(
        None, "--model", help="Model version (a folder under PROJECT/models/; default: newest)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Compute every user's candidates with a trained model and write them to the cache."""
    from feedstack.train.candidate_cache import build_candidate_cache

    with cli_errors():
        root = project_dir(project)

        def say(msg: str) -> None:
            console.print(msg, highlight=False)  # stderr: stdout stays JSON

        result = build_candidate_cache(root, version=model, say=say)
        record_measurement("candidates", result, root, as_json)
