"""The planner's inputs: named quantities, each measured or (failing that) assumed from the spec.

``PlanInputs.resolve(spec, measured)`` takes whatever measurements exist (the report's reader
builds them from ``measurements/``) and fills every other input from ``cost.fallback.<name>``,
labeled assumed with that key. The planner never sees a bare number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from feedstack.core.errors import InputError
from feedstack.core.spec import Spec
from feedstack.plan.quantity import Quantity

UNITS: dict[str, str] = {
    "rps_per_core_at_slo": "requests/s/core",
    "floor_rps_per_core": "requests/s/core",
    "bytes_per_candidate": "bytes",
    "feature_bytes_per_user": "bytes",
    "feature_bytes_per_article": "bytes",
    "train_s_per_million_events": "core-s/1M events",
    "candidate_build_ms_per_user": "core-ms/user",
    "ingest_events_per_s_per_core": "events/s/core",
    "worker_events_per_s_per_core": "events/s/core",
    "stored_bytes_per_event": "bytes",
    "events_per_request": "events/request",
    "rank_ms_per_request": "core-ms/request",
    "live_articles": "articles",
    "feature_lag_p99_s": "s",
    "item_state_events_per_s_per_core": "events/s/core",
    "model_state_bytes": "bytes",
}


@dataclass(frozen=True)
class PlanInputs:
    rps_per_core_at_slo: Quantity
    floor_rps_per_core: Quantity
    bytes_per_candidate: Quantity
    feature_bytes_per_user: Quantity
    feature_bytes_per_article: Quantity
    train_s_per_million_events: Quantity
    candidate_build_ms_per_user: Quantity
    ingest_events_per_s_per_core: Quantity
    worker_events_per_s_per_core: Quantity
    stored_bytes_per_event: Quantity
    events_per_request: Quantity
    rank_ms_per_request: Quantity
    live_articles: Quantity
    feature_lag_p99_s: Quantity
    item_state_events_per_s_per_core: Quantity
    model_state_bytes: Quantity

    @classmethod
    def resolve(cls, spec: Spec, measured: Mapping[str, Quantity] | None = None) -> PlanInputs:
        """Measured where given, else ``cost.fallback.<name>`` (assumed)."""
        measured = dict(measured or {})
        unknown = set(measured) - set(UNITS)
        if unknown:
            raise InputError(f"unknown plan inputs {sorted(unknown)}; known: {sorted(UNITS)}")
        values: dict[str, Quantity] = {}
        fallback = spec.cost.fallback
        for f in fields(cls):
            q = measured.get(f.name)
            if q is not None and not q.value > 0:
                raise InputError(f"plan input {f.name} = {q.value!r} ({q.source}): must be > 0")
            values[f.name] = q or Quantity.assumed(
                getattr(fallback, f.name), UNITS[f.name], f"spec cost.fallback.{f.name}"
            )
        return cls(**values)

    def as_dict(self) -> dict[str, Quantity]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
