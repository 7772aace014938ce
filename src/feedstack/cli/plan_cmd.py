"""``feedstack plan``: capacity and monthly cost from the spec and the latest measurements.

Reads ``PROJECT/feedstack.yaml`` (the reference case's defaults when the project has none) and
``PROJECT/measurements/``; every planner input without a measurement is the spec's assumption
(``cost.fallback``), and the output labels each one. Writes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from feedstack.cli.common import JsonOption, ProjectOption, cli_errors, console, emit_json


def load_project_spec(root: Path) -> tuple[Any, str]:
    """The project's spec, or the defaults (said so) when there is no feedstack.yaml."""
    from feedstack.core.spec import SPEC_FILE, Spec, load_spec

    if (root / SPEC_FILE).is_file():
        return load_spec(root), str(root / SPEC_FILE)
    return Spec(), f"defaults (no {SPEC_FILE} in {root})"


def plan(
    dau: int | None = typer.Option(
        None, "--dau", min=1, help="Daily active users (default: the spec's traffic)."
    ),
    project: Path | None = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Plan capacity and cost: peak QPS, cores, Redis GB, $/month against the budget."""
    from feedstack.cli.common import project_dir
    from feedstack.plan.planner import with_dau
    from feedstack.report.measured import plan_from_measurements

    with cli_errors():
        root = project_dir(project)
        spec, spec_source = load_project_spec(root)
        if dau is not None:
            spec = with_dau(spec, dau)
        result = {"spec": spec_source, **plan_from_measurements(spec, root / "measurements")}
        if as_json:
            emit_json(result)
        else:
            _print(result)


def _print(r: dict[str, Any]) -> None:
    from rich.table import Table

    console.print(f"spec: {r['spec']}", highlight=False)
    head = Table(title="capacity and cost")
    head.add_column("quantity")
    head.add_column("value", justify="right")
    head.add_column("label")
    head.add_column("source")
    for name in ("peak_qps", "serving_cores", "replicas_per_zone", "redis_gb", "storage_gb",
                 "batch_core_h_per_month", "monthly_cost"):  # fmt: skip
        q = r["quantities"][name]
        head.add_row(name, f"{q['value']:,} {q['unit']}", q["label"], q["source"])
    console.print(head)
    verdict = "within" if r["within_budget"] else "OVER"
    console.print(
        f"${r['monthly_cost_usd']:,.0f}/month, {verdict} the ${r['budget_usd']:,.0f} budget; "
        f"bottleneck: {r['bottleneck']} ({r['bottleneck_share']:.0%})",
        highlight=False,
    )
    built = r["as_built"]
    console.print(
        f"as built (batch on spot, no other cut): ${built['monthly_cost_usd']:,.0f}/month, "
        + ("within budget" if built["within_budget"] else "OVER budget"),
        highlight=False,
    )
    follow = r["state_follow_share"]
    console.print(
        f"every serving process follows the log: {follow:.0%} of each core"
        + ("" if r["state_follow_feasible"] else " (not feasible at this traffic)"),
        highlight=False,
    )
    if not built["within_budget"] or not r["state_follow_feasible"]:
        w = r["without_log_following"]
        console.print(
            f"what would fit: {w['what']}: ${w['monthly_cost_usd']:,.0f}/month", highlight=False
        )
    console.print(f"pattern: {r['recommended_pattern']['why']}", highlight=False)
    for cut in r["plan_to_fit"]:
        console.print(f"  cut {cut['cut']}: saves ${cut['saves_usd']:,.0f}", highlight=False)
    console.print(f"assumed share of the cost: {r['assumed_cost_share']:.1%}", highlight=False)
    assumed = [k for k, q in r["inputs"].items() if q["label"] == "assumed"]
    if assumed:
        console.print(f"assumed (not measured yet): {', '.join(assumed)}", highlight=False)
