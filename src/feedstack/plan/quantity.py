"""A number with its unit and where it came from: the planner's only currency.

Every quantity is one of three kinds (the report prints the label beside the number):

* **measured**: read from a record in ``measurements/``; the source names the record, the command
  that wrote it and when.
* **derived**: computed here from other quantities; the source is the formula, and ``inputs``
  keeps the quantities it was computed from, so a reader can walk back to what was measured.
* **assumed**: a spec key (``cost.fallback.rps_per_core_at_slo``) or a price-table entry with its
  source and date; never a constant hidden in code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Label = Literal["measured", "derived", "assumed"]


@dataclass(frozen=True)
class Quantity:
    value: float
    unit: str
    label: Label
    source: str
    inputs: Mapping[str, Quantity] = field(default_factory=dict)

    @classmethod
    def measured(cls, value: float, unit: str, record: str, command: str, at: str) -> Quantity:
        """``record``: the record file (or kind and key); ``command`` and ``at`` from the record."""
        return cls(float(value), unit, "measured", f"{record}: `{command}` at {at}")

    @classmethod
    def assumed(cls, value: float, unit: str, source: str) -> Quantity:
        return cls(float(value), unit, "assumed", source)

    @classmethod
    def derived(
        cls, value: float, unit: str, formula: str, inputs: Mapping[str, Quantity]
    ) -> Quantity:
        return cls(float(value), unit, "derived", formula, dict(inputs))

    def to_json(self, *, deep: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "value": _round(self.value),
            "unit": self.unit,
            "label": self.label,
            "source": self.source,
        }
        if deep and self.inputs:
            out["inputs"] = {k: q.to_json(deep=True) for k, q in self.inputs.items()}
        return out

    def leaves(self) -> dict[str, Quantity]:
        """The measured and assumed quantities this one rests on (by the name used here)."""
        if not self.inputs:
            return {}
        out: dict[str, Quantity] = {}
        for name, q in self.inputs.items():
            if q.label == "derived":
                out.update(q.leaves())
            else:
                out[name] = q
        return out


def _round(value: float) -> float | int:
    """Four significant digits are more than any input carries; integers print as integers."""
    if value == int(value) and abs(value) < 1e15:
        return int(value)
    return float(f"{value:.4g}")
