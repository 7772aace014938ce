"""``feedstack train``: fit the project's recommender on its log and select a ranker.

``--recipe`` (default: the spec's ``train.recipe``, ``auto``): ``news`` for a log with
impressions and article text, ``interactions`` for a log of clicks only (train/interactions.py).
For the news recipe it reads the offline event copy (``feedstack ingest`` writes it), replays it
to fit the candidate sources and the LambdaRank re-rankers, evaluates them on the last
``--eval-hours`` of the log, times them, and writes the model-selection table, the selected
model under
``PROJECT/models/<version>/`` and the result under ``PROJECT/measurements/``. With ``--world``
(the folder of the world that generated the log) the evaluation adds the world's ground truth:
the expected clicks of every ranked list.
"""

from __future__ import annotations

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


def _sizes(text: str) -> tuple[Any, ...]:
    from feedstack.core.errors import InputError
    from feedstack.train.slates import RankerSize

    sizes = []
    for part in text.split(","):
        trees, _, leaves = part.strip().partition("x")
        if not (trees.isdigit() and leaves.isdigit() and int(trees) > 0 and int(leaves) > 1):
            raise InputError(f"--sizes: {part!r} is not TREESxLEAVES (e.g. 100x15)")
        sizes.append(RankerSize(int(trees), int(leaves)))
    return tuple(sizes)


def train(
    project: Path | None = ProjectOption,
    warmup_hours: float = typer.Option(24.0, "--warmup-hours", min=0.25, help="Warm-up window."),
    eval_hours: float = typer.Option(24.0, "--eval-hours", min=0.25, help="Evaluation window."),
    sizes: str = typer.Option(
        "30x7,100x15,300x31", "--sizes", help="Ranker sizes to compare, TREESxLEAVES,..."
    ),
    world: Path | None = typer.Option(
        None, "--world", help="World folder (world.json): adds ground-truth expected clicks."
    ),
    repeats: int = typer.Option(300, "--repeats", min=10, help="Timed predict calls per ranker."),
    seed: int = typer.Option(0, "--seed", help="Seed of negative sampling and the rankers."),
    register: bool = typer.Option(
        True,
        "--register/--no-register",
        help="Register the model in the MLflow registry (the first one becomes champion).",
    ),
    recipe: str | None = typer.Option(
        None,
        "--recipe",
        help="auto | news | interactions (default: the spec's train.recipe, auto).",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Fit candidate sources and LambdaRank rankers on the log; select one under the budget;
    register it in MLflow with its lineage."""
    from feedstack.storage import measurements
    from feedstack.train.project import train_project

    with cli_errors():
        root = project_dir(project)
        result = train_project(
            root,
            warmup_hours=warmup_hours,
            eval_hours=eval_hours,
            sizes=_sizes(sizes),
            repeats=repeats,
            seed=seed,
            oracle=_oracle(world) if world is not None else None,
            say=_say,
            recipe=recipe,
        )
        folder = result["model_dir"]
        if register:
            from feedstack.core.spec import load_spec
            from feedstack.registry.mlflow_registry import register_trained

            result["registry"] = register_trained(root, result, load_spec(root))
        rec = measurements.record("train", result)
        path = measurements.save(root / "measurements", rec)
        if as_json:
            emit_json(result)
        else:
            _print(result)
            console.print(f"model in {folder}\nrecorded in {path}")


def _say(message: str) -> None:
    """Progress on stderr (stdout stays machine-readable under --json)."""
    console.print(f"[dim]train:[/dim] {message}", highlight=False)


def _oracle(folder: Path) -> Any:
    """Expected clicks of ranked lists under the world that generated the log."""
    from feedstack.world import NewsWorld, load_world_config

    return NewsWorld(load_world_config(folder)).expected_clicks_many


def _print(result: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"ranker selection (budget p99 <= {result['budget_ms']:.2f} ms)")
    k = "ndcg@20" if result.get("recipe") == "interactions" else "ndcg@10"
    for column in ("model", "trees", "leaves", k, "fit_s", "p50_ms", "p99_ms", "fits"):
        table.add_column(column)
    for row in result["selection"]:
        mark = "*" if row["model"] == result["selected"] else ""
        table.add_row(
            f"{row['model']}{mark}",
            str(row["trees"]),
            str(row["leaves"]),
            f"{row[k]:.4f}",
            f"{row['fit_s']:.2f}",
            f"{row['p50_ms']:.3f}",
            f"{row['p99_ms']:.3f}",
            "yes" if row["fits_budget"] else "no",
        )
    console.print(table)
    if result.get("recipe") == "interactions":
        fit = result["fit"]
        console.print(
            f"ranker valid NDCG@20 {result['selection'][0]['ndcg@20']:.4f} vs blend "
            f"{result['blend_valid_ndcg']:.4f} (ranker used: {result['ranker_used']}); "
            f"{fit['label_users']} label users, {fit['ranker_rows']} ranker rows",
            highlight=False,
        )
        return
    sources = result.get("sources")
    if sources:
        kept = Table(
            title="candidate sources, label window (kept: unique recall >= "
            f"{sources['min_unique_recall']})"
        )
        for column in ("source", "recall", "unique recall", "kept"):
            kept.add_column(column)
        for name, row in sources["table"].items():
            kept.add_row(
                name,
                f"{row['recall']:.4f}",
                f"{row['unique_recall']:.4f}",
                "yes" if row["kept"] else "no",
            )
        console.print(kept)
    ev = result["evaluation"]
    console.print(
        f"blend NDCG@10 {result['lift']['blend_ndcg@10']:.4f} -> ranker "
        f"{result['lift']['ranker_ndcg@10']:.4f} ({result['lift']['relative']:+.1%}); "
        f"candidate recall {ev['candidate_recall']:.3f} over {ev['requests_with_history']} "
        "requests with history",
        highlight=False,
    )
