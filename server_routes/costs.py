"""GET /sagemaker/costs: what runs and what it costs (core/costs.py), for any role: a read."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..core.costs import CostsReport
from .context import Context
from .http import json_ok, shapes, the
from .schemas import CostsQuery


@shapes(query=CostsQuery, answer=CostsReport)
async def costs(request: web.Request, ctx: Context) -> web.Response:
    """Every endpoint's instances, hourly cost and cost today and this month; storage; the last 30 days."""
    fresh = the(request, CostsQuery).fresh
    return json_ok(await asyncio.to_thread(ctx.services.costs.report, fresh))


ROUTES = [("GET", "/costs", costs)]
