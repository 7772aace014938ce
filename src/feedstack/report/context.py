"""What every section builder reads: the spec, the measurements, the plan, where figures go."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feedstack.core.spec import Spec
from feedstack.plan.inputs import PlanInputs
from feedstack.plan.quantity import Quantity
from feedstack.report.measured import Measurements


@dataclass(frozen=True)
class Context:
    spec: Spec
    m: Measurements
    inputs: PlanInputs
    plan: dict[str, Any]
    out: Path

    def spec_q(self, key: str, unit: str) -> Quantity:
        """A spec value (dotted key) as an assumed quantity."""
        value: Any = self.spec
        for part in key.split("."):
            value = getattr(value, part)
        return Quantity.assumed(float(value), unit, f"spec {key}")

    def measured(self, kind: str, path: str, unit: str) -> Quantity | None:
        """``result.<path>`` of the latest ``kind`` record, cited; None when absent."""
        rec = self.m.get(kind)
        if rec is None:
            return None
        value: Any = rec["result"]
        for part in path.split("."):
            if not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return self.m.cite(kind, path, float(value), unit)
