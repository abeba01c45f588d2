"""GET /sagemaker/snapshot and POST /sagemaker/analyze."""

from __future__ import annotations

import asyncio

from aiohttp import web

from .context import Context
from .http import json_ok, shapes, the
from .schemas import Analyze


async def get_snapshot(request: web.Request, ctx: Context) -> web.Response:
    return json_ok(await asyncio.to_thread(ctx.host.snapshot))


@shapes(body=Analyze)
async def post_analyze(request: web.Request, ctx: Context) -> web.Response:
    return json_ok(await asyncio.to_thread(ctx.host.analyze, the(request, Analyze).workflow))


ROUTES = [("GET", "/snapshot", get_snapshot), ("POST", "/analyze", post_analyze)]
