"""``feedstack rollout status|step|promote|rollback``: the canary's controller by hand.

``step --observed FILE`` feeds one look of observed metrics (cumulative counters per arm, as a
scrape of the serving metrics gives them) to the controller and applies its decision; every
decision lands in PROJECT/registry/decisions.jsonl and, as tags, on the MLflow version.
``promote`` and ``rollback`` move the MLflow aliases with the rollout state.
``bench rollout`` (registered under ``feedstack bench``) proves the controller on the simulated
world.
"""

from __future__ import annotations

import json
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
    record_measurement,
)

app = typer.Typer(help="The canary rollout: status, one controller step, promote, roll back.")

RegistryOption = typer.Option(
    True, "--registry/--no-registry", help="Mirror aliases and decisions in MLflow."
)


def _runner(root: Path, registry: bool) -> tuple[Any, Any]:
    from feedstack.core.spec import load_spec
    from feedstack.registry.rollout import RolloutPolicy
    from feedstack.registry.runner import RolloutRunner

    spec = load_spec(root)
    reg = None
    if registry:
        from feedstack.registry.mlflow_registry import MlflowRegistry

        reg = MlflowRegistry.from_spec(root, spec)
    hook = None if reg is None else (lambda rec: _mirror(reg, rec))
    return RolloutRunner(root, RolloutPolicy.from_spec(spec), on_decision=hook), reg


def _mirror(reg: Any, rec: dict[str, Any]) -> None:
    """The decision as tags on the challenger's MLflow version; aliases follow the outcome."""
    from feedstack.core.errors import InputError

    challenger = rec.get("challenger")
    if not challenger:
        return
    try:
        reg.tag(challenger, {"rollout.last_decision": rec, "rollout.action": rec["action"]})
    except InputError:
        return  # a version deployed with --no-registry: nothing to mirror
    if rec["action"] == "promote":
        reg.set_alias("champion", challenger)
        reg.clear_alias("challenger")
    elif rec["action"] == "rollback":
        reg.clear_alias("challenger")


def _show(out: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(out)
    else:
        console.print_json(data=out)


@app.command("status")
def status(project: Path | None = ProjectOption, as_json: bool = JsonOption) -> None:
    """The rollout state and the last decision."""
    with cli_errors():
        runner, _ = _runner(project_dir(project), registry=False)
        _show(runner.status(), as_json)


@app.command("step")
def step(
    observed: Path | None = typer.Option(
        None, "--observed", help='JSON: {"canary": {...}, "control": {...}} cumulative counters.'
    ),
    metrics_url: str | None = typer.Option(
        None,
        "--metrics-url",
        help="Or scrape a serving replica's /metrics (per-arm counters) for the observations.",
    ),
    registry: bool = RegistryOption,
    project: Path | None = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """One controller look: hold, step up, promote or roll back."""
    from feedstack.core.errors import InputError
    from feedstack.registry.rollout import observations_from_json

    with cli_errors():
        if (observed is None) == (metrics_url is None):
            raise InputError("give exactly one of --observed FILE or --metrics-url URL")
        if metrics_url is not None:
            from feedstack.monitor.scrape import fetch_text
            from feedstack.registry.observe import observed_from_metrics

            doc, where = observed_from_metrics(fetch_text(metrics_url)), metrics_url
        else:
            assert observed is not None
            try:
                doc = json.loads(observed.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise InputError(f"--observed {observed}: unreadable ({exc})") from None
            where = str(observed)
        canary, control = observations_from_json(doc, where)
        runner, _ = _runner(project_dir(project), registry)
        decision = runner.step(canary, control, datetime.now(UTC))
        _show(decision.to_json(), as_json)


@app.command("promote")
def promote(
    reason: str = typer.Option("promoted by hand", "--reason", help="Logged with the decision."),
    registry: bool = RegistryOption,
    project: Path | None = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Make the canary the champion now."""
    with cli_errors():
        runner, _ = _runner(project_dir(project), registry)
        runner.promote(datetime.now(UTC), reason)
        _show(runner.status(), as_json)


@app.command("rollback")
def rollback(
    reason: str = typer.Option("rolled back by hand", "--reason", help="Logged with it."),
    registry: bool = RegistryOption,
    project: Path | None = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Send everyone back to the champion now."""
    with cli_errors():
        runner, _ = _runner(project_dir(project), registry)
        runner.rollback(datetime.now(UTC), reason)
        _show(runner.status(), as_json)


def bench_rollout(
    canary: float = typer.Option(10.0, "--canary", min=0.1, max=99.0, help="Canary percent."),
    bad_reps: int = typer.Option(20, "--bad-reps", min=1, help="Bad-canary repetitions."),
    good_reps: int = typer.Option(3, "--good-reps", min=0, help="Better-canary repetitions."),
    users: int = typer.Option(50_000, "--users", min=100, help="Users in the simulated world."),
    project: Path | None = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Canary rollouts on the simulated world: bad ones roll back, better ones are promoted."""
    from feedstack.core.spec import load_spec
    from feedstack.registry.benchmarks import SimWorld, run_rollout_bench

    with cli_errors():
        root = project_dir(project)
        spec = load_spec(root) if (root / "feedstack.yaml").is_file() else None
        res = run_rollout_bench(
            spec,
            world=SimWorld(users=users),
            canary_pct=canary,
            bad_reps=bad_reps,
            good_reps=good_reps,
        )
        record_measurement("bench-rollout", res, project, as_json)
