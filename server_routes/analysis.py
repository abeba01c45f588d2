"""GET /sagemaker/snapshot and POST /sagemaker/analyze."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..core.errors import BadRequest
from .context import Context
from .http import json_ok, read_object


async def get_snapshot(request: web.Request, ctx: Context) -> web.Response:
    return json_ok(await asyncio.to_thread(ctx.host.snapshot))


async def post_analyze(request: web.Request, ctx: Context) -> web.Response:
    body = await read_object(request)
    if "workflow" not in body:
        raise BadRequest("missing field: workflow (ComfyUI's UI or API format)")
    return json_ok(await asyncio.to_thread(ctx.host.analyze, body["workflow"]))


ROUTES = [("GET", "/snapshot", get_snapshot), ("POST", "/analyze", post_analyze)]
