"""``build_report(project, out)``: spec + latest measurements + plan -> report.md/html/json.

Sections follow the design story: Problem -> Metrics -> Data -> Model -> Serve -> Scale ->
Monitor -> Cost. ``report.json`` has one key per section; each number in it carries its label and
source. Files are written under temporary names and renamed, so a failed run leaves the previous
report whole.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from feedstack.core.spec import Spec
from feedstack.plan.planner import plan
from feedstack.report import operations, product
from feedstack.report.context import Context
from feedstack.report.measured import resolve
from feedstack.report.render import html_page, markdown
from feedstack.report.section import Section

STAGES: tuple[tuple[str, Callable[[Context], Section]], ...] = (
    ("problem", product.problem),
    ("metrics", product.metrics),
    ("data", product.data),
    ("model", product.model),
    ("serve", operations.serve),
    ("scale", operations.scale),
    ("monitor", operations.monitor),
    ("cost", operations.cost),
)


def build_report(
    spec: Spec, measurements_dir: Path, out: Path, now: datetime | None = None
) -> dict[str, Any]:
    """Write report.md, report.html, report.json and the PNGs into ``out``; return the JSON."""
    out.mkdir(parents=True, exist_ok=True)
    m, inputs = resolve(spec, measurements_dir)
    result = plan(spec, inputs)
    ctx = Context(spec, m, inputs, result, out)
    sections = [fn(ctx) for _, fn in STAGES]
    generated = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    title = f"feedstack design report: {spec.name}"
    doc = {s.key: s.to_json() for s in sections}
    files = {
        "report.md": markdown(title, sections, generated).encode("utf-8"),
        "report.html": html_page(title, sections, generated, out).encode("utf-8"),
        "report.json": orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS),
    }
    for name, data in files.items():
        tmp = out / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(out / name)
    return doc
