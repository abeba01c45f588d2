"""`comfyui-sagemaker aws prices refresh`: the SageMaker hosting prices of core/prices.json, read again from the
AWS Price List API.

pricing:GetProducts answers from its own endpoints (us-east-1 here: AWS Billing User Guide, "Using the AWS
Price List Query API": us-east-1, eu-central-1, ap-south-1); ServiceCode AmazonSageMaker, component Hosting.
Each PriceList entry is a JSON document as a string (Price List API Reference, GetProducts: "PriceList ...
list of strings"): product.attributes (regionCode, instanceName, usagetype such as `USE1-Host:ml.g5.xlarge`)
and terms.OnDemand.<offer>.priceDimensions.<rate>.pricePerUnit.USD per `Hrs`. Asynchronous inference bills
the same instance-hour (its `AsyncInf:` usage type carries the Host price), so the Host rows are the table.
A caller that may not call it is told so and the shipped table stays as it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from datetime import date
from pathlib import Path
from typing import Any

from ..core import prices
from ..core.errors import SageMakerError
from .errors import error_code, error_message

PRICING_REGION = "us-east-1"
HOSTING = re.compile(r"(?:[A-Z0-9]+-)?Host:(ml\.[a-z0-9-]+\.[a-z0-9]+)")  # USE1-Host:ml.g5.xlarge
SOURCE = ("AWS Price List API (pricing:GetProducts, service code AmazonSageMaker, component Hosting: Real-Time "
          "and Asynchronous Inference, on demand) for sagemaker_hosting, read {day}; the stack's rates (S3 "
          "Standard, ECR, CodeBuild, CloudWatch Logs) from AWS's public price pages")


class PricesNotRefreshed(SageMakerError):
    """The Price List API could not be read (no permission, no network): the shipped table stays."""

    code = "prices_not_refreshed"


def hourly_rate(entry: str) -> tuple[str, str, float] | None:
    """(region, instance type, USD per hour) of one PriceList entry, None when it is no hosting instance-hour."""
    doc = json.loads(entry)
    attributes = doc.get("product", {}).get("attributes", {})
    found = HOSTING.fullmatch(attributes.get("usagetype", ""))
    region = attributes.get("regionCode", "")
    if not found or not region:
        return None
    for offer in doc.get("terms", {}).get("OnDemand", {}).values():
        for dimension in offer.get("priceDimensions", {}).values():
            usd = dimension.get("pricePerUnit", {}).get("USD")
            if dimension.get("unit") == "Hrs" and usd not in (None, ""):
                price = float(usd)
                return (region, found.group(1), price) if price > 0 else None
    return None


def hosting_prices(pricing: Any, regions: Iterable[str]) -> dict[str, dict[str, float]]:
    """region -> instance type -> USD per hour, for each region asked (paginated GetProducts)."""
    from botocore.exceptions import BotoCoreError, ClientError

    table: dict[str, dict[str, float]] = {}
    for region in sorted(set(regions)):
        filters = [{"Type": "TERM_MATCH", "Field": "component", "Value": "Hosting"},
                   {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region}]
        try:
            for page in pricing.get_paginator("get_products").paginate(
                    ServiceCode="AmazonSageMaker", Filters=filters, FormatVersion="aws_v1"):
                for entry in page.get("PriceList", []):
                    rate = hourly_rate(entry)
                    if rate is not None and rate[0] == region:
                        table.setdefault(region, {})[rate[1]] = rate[2]
        except ClientError as err:
            raise PricesNotRefreshed(f"the AWS Price List API refused ({error_code(err)}: {error_message(err)}): "
                                     "these credentials need pricing:GetProducts; the prices of "
                                     f"{prices.table().as_of} stay") from None
        except BotoCoreError as err:
            raise PricesNotRefreshed(f"the AWS Price List API could not be reached ({err}); the prices of "
                                     f"{prices.table().as_of} stay") from None
    return table


def refresh(pricing: Any, regions: Iterable[str], say: Callable[[str], None], path: Path = prices.TABLE_PATH,
            today: date | None = None) -> prices.Table:
    """Rewrite the table's hosting prices for `regions` (the others kept), dated today; nothing is written
    when a region answers no price (a wrong filter must not empty the table)."""
    current = prices.table() if path == prices.TABLE_PATH else prices.parse(json.loads(path.read_text()))
    fresh = hosting_prices(pricing, regions)
    empty = sorted(set(regions) - set(fresh))
    if empty:
        raise PricesNotRefreshed(f"the AWS Price List API listed no SageMaker hosting price in {', '.join(empty)}; "
                                 f"the prices of {current.as_of} stay")
    day = (today or date.today()).isoformat()
    table = prices.Table(as_of=day, source=SOURCE.format(day=day), currency="USD",
                         hours_per_month=current.hours_per_month,
                         hosting={**current.hosting, **{r: dict(sorted(t.items())) for r, t in fresh.items()}},
                         stack=current.stack)
    path.write_text(json.dumps(prices.dump(table), indent=2) + "\n", encoding="utf-8")
    prices.reload()
    for region, types in sorted(fresh.items()):
        say(f"{region}: {len(types)} instance types (ml.g5.xlarge: "
            f"{prices.money(types['ml.g5.xlarge']) + '/h' if 'ml.g5.xlarge' in types else 'not offered'})")
    say(f"wrote {path} (prices of {day})")
    return table
