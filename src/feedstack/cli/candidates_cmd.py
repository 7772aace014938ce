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
    EngineOption,
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
    engine: str | None = EngineOption,
    as_json: bool = JsonOption,
) -> None:
    """Compute every user's candidates with a trained model and write them to the cache.

    On Spark (--engine local[N] or spark://...) the same per-batch code runs per task, users
    grouped by region shard; a Redis cache is written by the tasks of each shard."""
    from feedstack.batch import jobs
    from feedstack.batch.engine import Engine
    from feedstack.core.spec import load_spec

    with cli_errors():
        root = project_dir(project)
        eng = Engine.from_spec(load_spec(root), engine)

        def say(msg: str) -> None:
            console.print(msg, highlight=False)  # stderr: stdout stays JSON

        result = jobs.candidate_build(root, eng, version=model, say=say)
        record_measurement("candidates", result, root, as_json)
