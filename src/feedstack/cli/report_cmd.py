"""``feedstack report``: the design report (report.md, report.html, report.json + figures).

Problem -> Metrics -> Data -> Model -> Serve -> Scale -> Monitor -> Cost, from the project's spec,
its latest measurements and the plan. Sections with nothing measured say which command to run.
"""

from __future__ import annotations

from pathlib import Path

import typer

from feedstack.cli.common import JsonOption, ProjectOption, cli_errors, console, emit_json


def report(
    project: Path | None = ProjectOption,
    out: Path | None = typer.Option(
        None, "--out", help="Folder for report.md/html/json and the PNGs (default: PROJECT/report)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Write the design report from the spec, the measurements and the plan."""
    from feedstack.cli.common import project_dir
    from feedstack.cli.plan_cmd import load_project_spec
    from feedstack.report.build import build_report

    with cli_errors():
        root = project_dir(project)
        spec, spec_source = load_project_spec(root)
        folder = out if out is not None else root / "report"
        doc = build_report(spec, root / "measurements", folder)
        answers = doc["problem"]["answers"]
        summary = {
            "out": str(folder),
            "files": ["report.md", "report.html", "report.json"],
            "plots": [p["file"] for s in doc.values() for p in s["plots"]],
            "spec": spec_source,
            "answers": answers,
        }
        if as_json:
            emit_json(summary)
        else:
            for line in doc["problem"]["findings"]:
                console.print(line, highlight=False)
            console.print(f"wrote {folder}/report.md, report.html, report.json")
