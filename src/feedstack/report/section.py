"""One report section as data: labeled numbers, findings, tables, figures, what is missing.

Sections are built by ``report/product.py`` and ``report/operations.py`` and rendered by
``report/render.py``; ``to_json`` is what ``report.json`` holds under the section's key. A
section opens with its decision and the alternatives it was measured against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from feedstack.plan.quantity import Quantity

NOT_MEASURED = "not measured yet (run: {command})"


@dataclass(frozen=True)
class Table:
    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "source": self.source,
            "rows": [dict(zip(self.columns, row, strict=True)) for row in self.rows],
        }


@dataclass
class Section:
    key: str
    title: str
    numbers: dict[str, dict[str, Any]] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    plots: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    decision: str = ""  # what this stage chose, first line of the section
    alternatives: str = ""  # what it was chosen against (and where the table is)

    def add(self, name: str, q: Quantity) -> None:
        self.numbers[name] = q.to_json()

    def add_json(self, name: str, q: dict[str, Any]) -> None:
        """A quantity already in its JSON form (the plan's output)."""
        self.numbers[name] = q

    def need(self, command: str, what: str = "") -> None:
        line = (f"{what}: " if what else "") + NOT_MEASURED.format(command=command)
        if line not in self.missing:
            self.missing.append(line)

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "decision": self.decision,
            "alternatives": self.alternatives,
            "numbers": self.numbers,
            "findings": self.findings,
            "tables": [t.to_json() for t in self.tables],
            "plots": [{"file": f, "caption": c} for f, c in self.plots],
            "missing": self.missing,
            **self.extra,
        }
