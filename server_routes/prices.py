"""GET /sagemaker/prices: what an endpoint would cost, before anything runs (core/prices.py's one table)."""

from __future__ import annotations

from aiohttp import web

from ..core import prices
from .context import RouteContext
from .http import json_ok, shapes, the
from .schemas import PricesQuery


@shapes(query=PricesQuery, answer=prices.Quote)
async def price(request: web.Request, ctx: RouteContext) -> web.Response:
    """Hourly and monthly (730 h) at min and max instances, and the sentence the endpoint form shows; the
    fields are null ("price unknown") for a region or type the dated table lacks. Real-time and async bill
    the same instance-hours; `autoscaling: null` keeps initial_count instances: ask with min = max = it."""
    q = the(request, PricesQuery)
    region = q.region or ctx.config.region
    return json_ok(prices.quote(region, q.instance_type, q.min, max(q.max, q.min)))


ROUTES = [
    ("GET", "/prices", price),
]
