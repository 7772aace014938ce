"""``feedstack experiment start|status|stop``: A/B tests of ranker versions or settings.

``start NAME --arm control=champion --arm b=challenger [--share 50,50]`` writes the experiment
(arms, shares, salt) under PROJECT/registry/experiments/; a VERSION is a model folder,
``champion`` or ``challenger`` (resolved to the rollout's folders now) or ``popular`` (the
fallback lists, unranked). ``feedstack serve`` (started after it) assigns users by hash and logs
the experiment and arm with each impression. ``status NAME`` joins those impressions (and any
exposure file a simulation wrote) to the clicks and dwell of the event log by request id and
prints CTR and dwell per arm, the lift over control with its interval, the users needed for the
spec's target lift and the sample-ratio check.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from feedstack.registry.experiment import Arm

app = typer.Typer(help="A/B tests: start, status (lift, interval, sample size, SRM), stop.")


def _arms(project: Path, specs: list[str], shares: str | None) -> list[Arm]:
    from feedstack.core.errors import InputError
    from feedstack.registry.experiment import Arm
    from feedstack.serve.experiments import POPULAR, resolve_version

    pairs = []
    for text in specs:
        name, sep, version = text.partition("=")
        if not sep or not name or not version:
            raise InputError(f"--arm: expected NAME=VERSION, got {text!r}")
        pairs.append((name, version if version == POPULAR else resolve_version(project, version)))
    if shares is None:
        weights = [1.0] * len(pairs)
    else:
        try:
            weights = [float(x) for x in shares.split(",")]
        except ValueError:
            raise InputError(f"--share: expected numbers like 50,50, got {shares!r}") from None
        if len(weights) != len(pairs) or any(w <= 0 for w in weights):
            raise InputError(f"--share: need {len(pairs)} positive numbers, got {shares!r}")
    total = sum(weights)
    return [
        Arm(n, v, w / total, {"policy": POPULAR} if v == POPULAR else {})
        for (n, v), w in zip(pairs, weights, strict=True)
    ]


@app.command("start")
def start(
    name: str = typer.Argument(..., help="Experiment name (a-z, 0-9, _ and -)."),
    arm: list[str] = typer.Option(
        ...,
        "--arm",
        help="NAME=VERSION, once per arm; the first arm is the control. VERSION: a model "
        "folder, champion, challenger or popular.",
    ),
    share: str | None = typer.Option(None, "--share", help="Relative shares, e.g. 50,50."),
    project: Path | None = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Start an A/B test between two or more arms."""
    from feedstack.registry.experiment import start_experiment

    with cli_errors():
        root = project_dir(project)
        exp = start_experiment(root, name, _arms(root, arm, share), datetime.now(UTC))
        if as_json:
            emit_json(exp.to_json())
        else:
            console.print(f"experiment {name} started: {exp.shares}", highlight=False)


@app.command("status")
def status(
    name: str | None = typer.Argument(None, help="Experiment name (omit to list them)."),
    project: Path | None = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """CTR and dwell per arm, lift with its interval, sample-size guidance, SRM check."""
    from feedstack.registry.ab_status import experiment_status
    from feedstack.registry.experiment import list_experiments

    with cli_errors():
        root = project_dir(project)
        if name is None:
            out = [e.to_json() for e in list_experiments(root)]
            if as_json:
                emit_json(out)
            else:
                console.print_json(data=out)
            return
        result = experiment_status(root, name)
        if as_json:
            emit_json(result)
        else:
            _print_status(result)


def _print_status(result: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"experiment {result['experiment']} (control: {result['control']})")
    for col in ("arm", "version", "users", "impressions", "clicks", "ctr", "lift [interval]"):
        table.add_column(col)
    for name, row in result["arms"].items():
        lift = row.get("lift")
        text = ""
        if lift and None not in (lift.get("estimate"), lift.get("low"), lift.get("high")):
            text = f"{lift['estimate']:+.1%} [{lift['low']:+.1%}, {lift['high']:+.1%}]"
            text += " significant" if row.get("significant") else ""
        table.add_row(name, str(row["version"]), f"{row['users']:,}", f"{row['impressions']:,.0f}",
                      f"{row['clicks']:,.0f}", f"{row['ctr']:.4f}", text)  # fmt: skip
    console.print(table)
    srm = result["srm"]
    verdict = "MISMATCH" if srm["mismatch"] else "ok"
    console.print(
        f"sample ratio: users {srm['users']} expected {[round(x) for x in srm['expected']]}, "
        f"p = {srm['p_value']:.3g} ({verdict}); {result['exposures']:,} exposures",
        highlight=False,
    )
    need = result["sample_size"].get("users_per_arm")
    if need is not None:
        console.print(f"users per arm needed for the target lift: {need:,.0f}", highlight=False)


@app.command("stop")
def stop(
    name: str = typer.Argument(..., help="Experiment name."),
    project: Path | None = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Stop an experiment (its record and exposures stay for the analysis)."""
    from feedstack.registry.experiment import stop_experiment

    with cli_errors():
        exp = stop_experiment(project_dir(project), name, datetime.now(UTC))
        if as_json:
            emit_json(exp.to_json())
        else:
            console.print(f"experiment {name} stopped at {exp.stopped_at}", highlight=False)


def bench_abtest(
    repetitions: int = typer.Option(20, "--repetitions", min=1, help="Seeded repetitions."),
    minutes: int = typer.Option(120, "--minutes", min=1, help="Simulated minutes per test."),
    users: int = typer.Option(50_000, "--users", min=100, help="Users in the simulated world."),
    project: Path | None = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """A/B tests on the simulated world: does the 95 % lift interval cover the true lift?"""
    from feedstack.core.spec import load_spec
    from feedstack.registry.benchmarks import SimWorld, run_abtest_bench

    with cli_errors():
        root = project_dir(project)
        spec = load_spec(root) if (root / "feedstack.yaml").is_file() else None
        res = run_abtest_bench(
            spec, world=SimWorld(users=users), repetitions=repetitions, minutes=minutes
        )
        record_measurement("bench-abtest", res, project, as_json)
