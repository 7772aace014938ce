"""The price table: the spec's ``cost`` prices as assumed quantities with their source and date."""

from __future__ import annotations

from dataclasses import dataclass

from feedstack.core.spec import Cost
from feedstack.plan.quantity import Quantity


@dataclass(frozen=True)
class Prices:
    vcpu_hour_usd: Quantity
    spot_vcpu_hour_usd: Quantity
    memory_gb_hour_usd: Quantity
    storage_gb_month_usd: Quantity
    savings_plan_discount: Quantity
    hours_per_month: Quantity

    @classmethod
    def from_spec(cls, cost: Cost) -> Prices:
        when = cost.prices_as_of

        def entry(key: str, unit: str, what: str) -> Quantity:
            return Quantity.assumed(getattr(cost, key), unit, f"spec cost.{key}: {what} ({when})")

        return cls(
            vcpu_hour_usd=entry("vcpu_hour_usd", "$/vCPU-h", "EC2 c6i on-demand"),
            spot_vcpu_hour_usd=entry("spot_vcpu_hour_usd", "$/vCPU-h", "EC2 c6i spot"),
            memory_gb_hour_usd=entry(
                "memory_gb_hour_usd", "$/GB-h", "ElastiCache cache.r7g on-demand"
            ),
            storage_gb_month_usd=entry("storage_gb_month_usd", "$/GB-month", "S3 Standard"),
            savings_plan_discount=entry(
                "savings_plan_discount", "fraction", "1-year Compute Savings Plan"
            ),
            hours_per_month=Quantity.assumed(
                cost.hours_per_month, "h/month", "spec cost.hours_per_month (AWS bills 730 h)"
            ),
        )

    def table(self) -> list[dict[str, object]]:
        """Rows for the report: entry, price, unit, source."""
        return [
            {"entry": name, **q.to_json()}
            for name, q in vars(self).items()
            if isinstance(q, Quantity)
        ]
