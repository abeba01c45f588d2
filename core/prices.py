"""What AWS charges, from the one price table shipped with the project (core/prices.json, dated).

Every price the product shows comes through here: the endpoint form, the publish dialog, `aws setup`, the
HTTP API and the Costs section. A region or instance type the table lacks is "price unknown" (None), never
a neighbour's price: `comfyui-sagemaker aws prices refresh` fills the table from the AWS Price List API.
An async endpoint bills the same instance-hours as a real-time one (SageMaker AI pricing, "Asynchronous
Inference" uses the Real-Time Inference instance prices); a month is AWS's 730 hours.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from typing_extensions import TypedDict

TABLE_PATH = Path(__file__).with_name("prices.json")
UNKNOWN = "price unknown"


@dataclass(frozen=True)
class Table:
    """The price table: when and where it was read, hourly hosting prices, and the stack's own rates."""

    as_of: str  # the day the prices were read (YYYY-MM-DD)
    source: str
    currency: str
    hours_per_month: float
    hosting: dict[str, dict[str, float]]  # region -> instance type -> USD per instance-hour
    stack: dict[str, dict[str, float]]  # region -> rate name (s3_gb_month, ecr_gb_month, ...) -> USD


class Quote(TypedDict):
    """The price of an instance type at a min/max instance count; None fields: price unknown."""

    region: str
    instance_type: str
    min: int
    max: int
    hourly: float | None  # one instance
    hourly_min: float | None
    hourly_max: float | None
    monthly_min: float | None
    monthly_max: float | None
    as_of: str
    text: str  # the sentence the UI shows


def parse(data: object) -> Table:
    """A table from its JSON form; ValueError naming what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("the price table must be a JSON object")
    try:
        return Table(as_of=str(data["as_of"]), source=str(data["source"]), currency=str(data["currency"]),
                     hours_per_month=float(data["hours_per_month"]),
                     hosting={r: {t: float(p) for t, p in types.items()}
                              for r, types in data["sagemaker_hosting"].items()},
                     stack={r: {k: float(v) for k, v in rates.items()} for r, rates in data["stack"].items()})
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        raise ValueError(f"the price table is malformed: {err!r}") from None


def dump(table: Table) -> dict[str, object]:
    return {"as_of": table.as_of, "currency": table.currency, "source": table.source,
            "hours_per_month": table.hours_per_month, "sagemaker_hosting": table.hosting, "stack": table.stack}


@lru_cache(maxsize=1)
def table() -> Table:
    return parse(json.loads(TABLE_PATH.read_text(encoding="utf-8")))


def reload() -> None:
    """Forget the cached table (after `aws prices refresh` rewrote it)."""
    table.cache_clear()


def hourly(region: str, instance_type: str, count: int = 1) -> float | None:
    """USD per hour for `count` instances of the type in the region; None: price unknown."""
    price = table().hosting.get(region, {}).get(instance_type)
    return None if price is None else price * count


def monthly(region: str, instance_type: str, count: int = 1) -> float | None:
    """USD per month (730 hours) for `count` instances running all month; None: price unknown."""
    price = hourly(region, instance_type, count)
    return None if price is None else price * table().hours_per_month


def stack_rate(region: str, name: str) -> float | None:
    """One of the stack's own rates (s3_gb_month, s3_get_per_1000, s3_put_per_1000, ecr_gb_month,
    codebuild_minute, logs_ingested_gb, logs_stored_gb_month); None: price unknown."""
    return table().stack.get(region, {}).get(name)


def money(usd: float) -> str:
    """$1.41 under $100, $1,028 from there: what a person reads, not cents of a monthly figure."""
    return f"${usd:,.2f}" if usd < 100 else f"${usd:,.0f}"


def quote(region: str, instance_type: str, minimum: int, maximum: int) -> Quote:
    """The price of an endpoint that keeps `minimum` instances and may grow to `maximum`."""
    one = hourly(region, instance_type)
    lo, hi = hourly(region, instance_type, minimum), hourly(region, instance_type, maximum)
    return Quote(region=region, instance_type=instance_type, min=minimum, max=maximum, hourly=one,
                 hourly_min=lo, hourly_max=hi, monthly_min=monthly(region, instance_type, minimum),
                 monthly_max=monthly(region, instance_type, maximum), as_of=table().as_of,
                 text=sentence(region, instance_type, minimum, maximum))


def sentence(region: str, instance_type: str, minimum: int, maximum: int) -> str:
    """What the form says: the always-on floor in money, then what each instance costs while it runs."""
    one = hourly(region, instance_type)
    if not region:
        return f"{instance_type}: {UNKNOWN} (no region is configured)"
    if one is None:
        return f"{instance_type} in {region}: {UNKNOWN} (the price table of {table().as_of} lacks it)"
    per = f"{money(one)}/h per instance while it runs"
    if minimum == 0:
        return (f"scales to zero: nothing billed while idle; {per}, at most {money(one * maximum)}/h "
                f"with {maximum} × {instance_type}")
    floor = monthly(region, instance_type, minimum) or 0.0
    kept = (f"keeps {minimum} × {instance_type} running: about {money(one * minimum)}/h, "
            f"{money(floor)}/month even when idle")
    return kept if maximum <= minimum else f"{kept}; at most {money(one * maximum)}/h with {maximum}"


# What `aws setup` says the stack itself costs (aws/stack.py: the bucket, the ECR repository keeping 10 images,
# a BUILD_GENERAL1_LARGE CodeBuild project, log groups). The worker image is about 8 GB; a build about 20 min.
IMAGE_GB = 8
BUILD_MINUTES = 20


def stack_lines(region: str) -> list[str]:
    """The stack's own prices in the region, one line each; "price unknown" where the table lacks one."""
    rates = table().stack.get(region, {})

    def usd(name: str, digits: int, times: float = 1.0) -> str:
        return f"${rates[name] * times:,.{digits}f}" if name in rates else UNKNOWN

    return [f"what the stack costs in {region or 'this region'} (prices of {table().as_of}, USD):",
            f"  S3 store: {usd('s3_gb_month', 3)} per GB-month of models, packs and outputs kept; "
            f"{usd('s3_get_per_1000', 4)} per 1,000 reads",
            f"  ECR worker image: {usd('ecr_gb_month', 2)} per GB-month (an image of ~{IMAGE_GB} GB: "
            f"{usd('ecr_gb_month', 2, IMAGE_GB)}/month; one per build, kept until `aws teardown`)",
            f"  CodeBuild: {usd('codebuild_minute', 3)} per build-minute (a {BUILD_MINUTES}-minute image build: "
            f"{usd('codebuild_minute', 2, BUILD_MINUTES)})",
            f"  CloudWatch Logs: {usd('logs_ingested_gb', 2)} per GB written, {usd('logs_stored_gb_month', 2)} "
            "per GB-month kept",
            "  SageMaker endpoints: only while their instances run (the endpoint form prices them before a deploy)"]
