"""The planner checked against a measured run: predicted serving cores for a load vs measured.

The prediction is the planner's own formula without headroom, busy cores = offered requests/s
divided by requests/s per core at the SLO; the measurement is the serving process's CPU time
over the run's wall time (cores actually busy). The issue's bar: within 25 %.
"""

from __future__ import annotations

from dataclasses import dataclass

from feedstack.core.errors import InputError


@dataclass(frozen=True)
class CoresCheck:
    offered_rps: float
    rps_per_core_at_slo: float
    predicted_cores: float
    measured_cores: float
    ratio: float  # predicted / measured
    tolerance: float

    @property
    def within_tolerance(self) -> bool:
        return abs(self.ratio - 1.0) <= self.tolerance

    def to_json(self) -> dict[str, float | bool]:
        return {
            "offered_rps": self.offered_rps,
            "rps_per_core_at_slo": self.rps_per_core_at_slo,
            "predicted_cores": round(self.predicted_cores, 4),
            "measured_cores": round(self.measured_cores, 4),
            "ratio": round(self.ratio, 4),
            "tolerance": self.tolerance,
            "within_tolerance": self.within_tolerance,
        }


def check_serving_cores(
    offered_rps: float,
    rps_per_core_at_slo: float,
    server_cpu_s: float,
    wall_s: float,
    tolerance: float = 0.25,
) -> CoresCheck:
    """Predicted busy cores for ``offered_rps`` vs ``server_cpu_s / wall_s`` measured."""
    for name, value in (
        ("offered_rps", offered_rps),
        ("rps_per_core_at_slo", rps_per_core_at_slo),
        ("server_cpu_s", server_cpu_s),
        ("wall_s", wall_s),
    ):
        if not value > 0:
            raise InputError(f"check_serving_cores: {name} = {value!r} must be > 0")
    predicted = offered_rps / rps_per_core_at_slo
    measured = server_cpu_s / wall_s
    return CoresCheck(
        offered_rps, rps_per_core_at_slo, predicted, measured, predicted / measured, tolerance
    )
