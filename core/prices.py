"""What AWS charges: a minimal stand-in for the project's one price table (issue 29's i29-price branch writes
the real one, dated and refreshable, with this same interface: hourly, monthly, stack_rate, table().as_of). A
region or instance type the table lacks is "price unknown" (None), never a neighbour's price. A month is AWS's
730 hours; an async endpoint bills the same instance-hours as a real-time one (SageMaker AI pricing,
"Asynchronous Inference")."""

from __future__ import annotations

from dataclasses import dataclass

AS_OF = "2026-12-01"
HOURS_PER_MONTH = 730.0
# region -> instance type -> USD per instance-hour (SageMaker AI pricing, Real-Time Inference, on demand).
HOSTING: dict[str, dict[str, float]] = {
    "us-east-1": {"ml.g5.xlarge": 1.408, "ml.g5.2xlarge": 1.515, "ml.g4dn.xlarge": 0.736, "ml.m5.large": 0.115},
    "us-west-2": {"ml.g5.xlarge": 1.408, "ml.g5.2xlarge": 1.515, "ml.g4dn.xlarge": 0.736, "ml.m5.large": 0.115},
    "eu-west-1": {"ml.g5.xlarge": 1.571, "ml.g4dn.xlarge": 0.822, "ml.m5.large": 0.128},
}
# region -> rate name -> USD (S3 pricing: Standard storage, first 50 TB per month).
STACK: dict[str, dict[str, float]] = {
    "us-east-1": {"s3_gb_month": 0.023},
    "us-west-2": {"s3_gb_month": 0.023},
    "eu-west-1": {"s3_gb_month": 0.023},
}


@dataclass(frozen=True)
class Table:
    as_of: str  # the day the prices were read (YYYY-MM-DD)


def table() -> Table:
    return Table(AS_OF)


def hourly(region: str, instance_type: str, count: int = 1) -> float | None:
    """USD per hour for `count` instances of the type in the region; None: price unknown."""
    price = HOSTING.get(region, {}).get(instance_type)
    return None if price is None else price * count


def monthly(region: str, instance_type: str, count: int = 1) -> float | None:
    """USD per month (730 hours) for `count` instances running all month; None: price unknown."""
    price = hourly(region, instance_type, count)
    return None if price is None else price * HOURS_PER_MONTH


def stack_rate(region: str, name: str) -> float | None:
    """One of the stack's own rates (s3_gb_month, ...); None: price unknown."""
    return STACK.get(region, {}).get(name)
