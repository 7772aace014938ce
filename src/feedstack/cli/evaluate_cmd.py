"""``feedstack evaluate``: fit the two-stage recommender on a public split and score it.

It trains through the ``interactions`` recipe of ``feedstack train`` (settings: the project's
``train.interactions`` when it has a feedstack.yaml, else the defaults), saves the model under
``PROJECT/evaluated/<version>/``, loads it back and scores the test users in the order a served
feed has (models/rank/order.py); the JSON names ``model_version`` and ``artifact``.

The protocol of the LightGCN/NGCF benchmarks: rank all items for every test user, training items
masked; Recall/NDCG@k averaged over users with a test item. Progress goes to stderr; ``--json``
prints the result on stdout. The result is also recorded in the project's ``measurements/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from feedstack.cli.common import (
    JsonOption,
    ProjectOption,
    cli_errors,
    console,
    project_dir,
    record_measurement,
)

FORMATS = ("lightgcn",)


class _RichReporter:
    """Draws the two-stage reporter's stages as rich progress bars on stderr."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: TaskID | None = None

    def start(self, stage: str, total: int) -> None:
        self._task = self._progress.add_task(stage, total=max(total, 1))

    def advance(self, n: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, n)


@contextmanager
def _reporter() -> Iterator[_RichReporter]:
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        yield _RichReporter(progress)


def evaluate(
    fmt: str = typer.Option("lightgcn", "--format", help=f"Input format: {', '.join(FORMATS)}."),
    train: Path = typer.Option(..., "--train", help="Training interactions file."),
    test: Path = typer.Option(..., "--test", help="Test interactions file."),
    k: int = typer.Option(20, "--k", min=1, help="Length of the ranked lists scored."),
    candidates: int = typer.Option(500, "--candidates", min=1, help="Candidates per user."),
    seed: int = typer.Option(0, "--seed", help="Seed of the hold-out split and the models."),
    project: Path | None = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Fit candidate sources + LambdaRank re-ranker on TRAIN, report Recall/NDCG@k on TEST."""
    from dataclasses import replace

    from feedstack.core.errors import InputError
    from feedstack.core.spec import SPEC_FILE, Spec, load_spec
    from feedstack.train import selection
    from feedstack.train.interactions import config_of, evaluate_split

    with cli_errors():
        if fmt not in FORMATS:
            raise InputError(f"--format: unknown format {fmt!r}; known: {', '.join(FORMATS)}")
        root = project_dir(project)
        spec = load_spec(root) if (root / SPEC_FILE).is_file() else Spec()
        config = replace(config_of(spec, seed), candidates=candidates)
        with _reporter() as reporter:
            result = evaluate_split(
                train,
                test,
                root / "evaluated",
                k=k,
                config=config,
                reporter=reporter,
                budget_ms=selection.budget_ms(spec),
            )
        record_measurement("evaluate", result, project, as_json)
