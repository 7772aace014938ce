"""Monthly cost from capacity and the price table; the budget check, the bottleneck, the cuts.

Lines (each a derived quantity citing its formula):

* serving: autoscaled core-hours (autoscale.py) + one spare replica per zone, at the vCPU price;
* stream: ingest + feature worker cores, always on;
* batch: retrain + candidate rebuild core-hours, on-demand unless the spot cut is taken;
* redis_candidates, redis_features: GB x hours x the memory price;
* storage: GB-months of the event log and its Parquet copy.

The bottleneck is the largest line: the resource that decides whether the design fits the budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from feedstack.core.spec import Spec
from feedstack.plan.autoscale import DaySimulation
from feedstack.plan.capacity import Capacity, spec_value
from feedstack.plan.prices import Prices
from feedstack.plan.quantity import Quantity


@dataclass(frozen=True)
class Levers:
    """What the cuts change: multipliers on the lines they touch (1.0 = as planned)."""

    batch_on_spot: bool = False
    candidate_bytes_factor: float = 1.0
    candidate_copies_factor: float = 1.0
    always_on_discount: float = 0.0


def monthly_lines(
    spec: Spec, prices: Prices, cap: Capacity, day: DaySimulation, levers: Levers = Levers()
) -> dict[str, Quantity]:
    """Dollars per month per line."""
    c = spec.cost
    hours = prices.hours_per_month
    vcpu = prices.vcpu_hour_usd
    mem = prices.memory_gb_hour_usd
    days_per_month = hours.value / 24.0
    spare = spec.traffic.zones * c.cores_per_replica
    discount = levers.always_on_discount
    # The base fleet, the spares and the stream cores run all month: what a savings plan covers.
    scaled_core_h = (day.core_h_per_day - day.base_cores * 24.0) * days_per_month
    serving = Quantity.derived(
        ((day.base_cores + spare) * hours.value * (1 - discount) + scaled_core_h) * vcpu.value,
        "$/month",
        "((base_cores + zones x cores_per_replica) x hours x (1 - savings_discount)"
        " + autoscaled core-h above the base) x vcpu_hour_usd",
        {"autoscaled_core_h_per_day": _day_q(day), "serving_cores_busy": cap.serving_cores_busy,
         "hours_per_month": hours, "vcpu_hour_usd": vcpu},
    )  # fmt: skip
    stream = Quantity.derived(
        cap.stream_cores.value * hours.value * (1 - discount) * vcpu.value,
        "$/month",
        "stream_cores x hours_per_month x (1 - savings_discount) x vcpu_hour_usd",
        {"stream_cores": cap.stream_cores, "hours_per_month": hours, "vcpu_hour_usd": vcpu},
    )
    batch_price = prices.spot_vcpu_hour_usd if levers.batch_on_spot else vcpu
    batch = Quantity.derived(
        cap.batch_core_h_per_month.value * batch_price.value,
        "$/month",
        f"batch_core_h_per_month x {'spot_' if levers.batch_on_spot else ''}vcpu_hour_usd",
        {"batch_core_h_per_month": cap.batch_core_h_per_month, "price": batch_price},
    )
    cand_gb = cap.redis_candidates_gb.value * levers.candidate_bytes_factor
    cand_gb *= levers.candidate_copies_factor
    redis_c = Quantity.derived(
        cand_gb * hours.value * mem.value,
        "$/month",
        "redis_candidates_gb x hours_per_month x memory_gb_hour_usd",
        {"redis_candidates_gb": cap.redis_candidates_gb, "hours_per_month": hours,
         "memory_gb_hour_usd": mem},
    )  # fmt: skip
    redis_f = Quantity.derived(
        cap.redis_features_gb.value * hours.value * mem.value,
        "$/month",
        "redis_features_gb x hours_per_month x memory_gb_hour_usd",
        {"redis_features_gb": cap.redis_features_gb, "hours_per_month": hours,
         "memory_gb_hour_usd": mem},
    )  # fmt: skip
    storage = Quantity.derived(
        cap.storage_gb.value * prices.storage_gb_month_usd.value,
        "$/month",
        "storage_gb x storage_gb_month_usd",
        {"storage_gb": cap.storage_gb, "storage_gb_month_usd": prices.storage_gb_month_usd},
    )
    lines = {
        "serving": serving,
        "stream": stream,
        "batch": batch,
        "redis_candidates": redis_c,
        "redis_features": redis_f,
        "storage": storage,
    }
    if cap.replica_state_gb.value > 0:  # the online pattern: sources in every process
        lines["replica_state"] = Quantity.derived(
            cap.replica_state_gb.value * hours.value * mem.value,
            "$/month",
            "replica_state_gb x hours_per_month x memory_gb_hour_usd",
            {"replica_state_gb": cap.replica_state_gb, "hours_per_month": hours,
             "memory_gb_hour_usd": mem},
        )  # fmt: skip
    return lines


def assumed_share(lines: dict[str, Quantity]) -> tuple[float, list[str]]:
    """The share of the monthly cost in lines that rest on an assumed planner input (a
    ``cost.fallback`` value no measurement replaced), and those inputs. Prices and the traffic
    the spec targets are givens, not measurements to be made."""
    total_usd = sum(q.value for q in lines.values())
    assumed: set[str] = set()
    share = 0.0
    for q in lines.values():
        found = _fallbacks(q)
        if found:
            assumed |= found
            share += q.value
    return (share / total_usd if total_usd else 0.0), sorted(assumed)


def _fallbacks(q: Quantity, seen: set[int] | None = None) -> set[str]:
    seen = set() if seen is None else seen
    if id(q) in seen:
        return set()
    seen.add(id(q))
    out = set()
    if q.label == "assumed" and q.source.startswith("spec cost.fallback."):
        out.add(q.source.removeprefix("spec cost.fallback."))
    for sub in q.inputs.values():
        out |= _fallbacks(sub, seen)
    return out


def _day_q(day: DaySimulation) -> Quantity:
    return Quantity.derived(
        day.core_h_per_day,
        "core-h/day",
        "sum over 5-min steps of the autoscaled fleet (plan/autoscale.py)",
        {},
    )


def total(lines: dict[str, Quantity]) -> Quantity:
    return Quantity.derived(
        sum(q.value for q in lines.values()), "$/month", " + ".join(lines), dict(lines)
    )


def bottleneck(lines: dict[str, Quantity]) -> str:
    """The largest line: where a cut or a design change matters most."""
    return max(lines, key=lambda k: lines[k].value)


@dataclass(frozen=True)
class Cut:
    name: str
    what: str
    apply: Callable[[Levers], Levers]


def cuts(spec: Spec) -> list[Cut]:
    """The levers the planner knows, each a change to the levers (see docs/plan.md)."""
    c = spec.cost
    n = spec.serve.candidates_per_user
    light = min(c.light_user_candidates, n)
    light_factor = 1.0 - c.light_user_share * (1.0 - light / n)
    return [
        Cut(
            "batch_on_spot",
            "run the retrain and the candidate rebuild on spot capacity (restartable jobs)",
            lambda lv: replace(lv, batch_on_spot=True),
        ),
        Cut(
            "fewer_candidates_for_light_users",
            f"cache {light} instead of {n} candidates for the {c.light_user_share:.0%} of users "
            "with few visits a day (spec cost.light_user_share, cost.light_user_candidates)",
            lambda lv: replace(lv, candidate_bytes_factor=lv.candidate_bytes_factor * light_factor),
        ),
        Cut(
            "compact_candidate_encoding",
            f"encode cached candidates in {c.compact_encoding_ratio:.0%} of the bytes (float16 "
            "scores and features, delta-coded ids; spec cost.compact_encoding_ratio)",
            lambda lv: replace(
                lv, candidate_bytes_factor=lv.candidate_bytes_factor * c.compact_encoding_ratio
            ),
        ),
        Cut(
            "candidate_cache_without_replica",
            "keep one copy of the candidate cache: the batch job can rebuild it, and serving "
            "answers from the in-memory fallback lists while a shard reloads",
            lambda lv: replace(lv, candidate_copies_factor=1.0 / c.redis_replication),
        ),
        Cut(
            "savings_plan_for_always_on",
            f"commit the always-on cores (base fleet, spares, stream) to a 1-year savings plan "
            f"({c.savings_plan_discount:.0%} off, spec cost.savings_plan_discount)",
            lambda lv: replace(lv, always_on_discount=c.savings_plan_discount),
        ),
    ]


def budget_check(spec: Spec, prices: Prices, cap: Capacity, day: DaySimulation) -> dict[str, Any]:
    """Cost, budget, bottleneck; each cut's saving alone; and the cuts that fit, greedily.

    Each cut's ``saves_usd`` is measured against the plan alone; ``plan_to_fit`` applies the
    cuts from the largest saving down until the total is within budget, with the marginal saving
    of each (cuts on the same line compound, so the marginal saving is smaller than alone).
    """
    lines = monthly_lines(spec, prices, cap, day)
    tot = total(lines)
    budget = spec_value(
        spec.budget.compute_usd_per_month, "$/month", "budget.compute_usd_per_month"
    )
    alone: list[dict[str, Any]] = []
    for cut in cuts(spec):
        after = total(monthly_lines(spec, prices, cap, day, cut.apply(Levers()))).value
        if tot.value - after > 0.005:
            alone.append({"cut": cut.name, "what": cut.what, "saves_usd": tot.value - after})
    alone.sort(key=lambda r: -float(r["saves_usd"]))
    by_name = {cut.name: cut for cut in cuts(spec)}
    fit: list[dict[str, Any]] = []
    levers, current = Levers(), tot.value
    for row in alone:
        if current <= budget.value:
            break
        levers = by_name[str(row["cut"])].apply(levers)
        after = total(monthly_lines(spec, prices, cap, day, levers)).value
        fit.append({"cut": row["cut"], "saves_usd": round(current - after, 2),
                    "monthly_cost_usd": round(after, 2)})  # fmt: skip
        current = after
    return {
        "lines": lines,
        "total": tot,
        "budget": budget,
        "within_budget": tot.value <= budget.value,
        "bottleneck": bottleneck(lines),
        "cuts": [{**r, "saves_usd": round(float(r["saves_usd"]), 2)} for r in alone],
        "plan_to_fit": fit,
        "fits_after_cuts": current <= budget.value,
    }
