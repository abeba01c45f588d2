"""Execution routes: Prompt on AWS."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..core.errors import BadRequest
from .context import Context
from .http import json_ok, query_int, read_object

FIELDS = {"prompt", "workflow", "template", "environment", "client_id"}
STATES = ("queued", "running", "succeeded", "failed", "cancelled")


async def create_execution(request: web.Request, ctx: Context) -> web.Response:
    body = await read_object(request, FIELDS)
    svc = ctx.services.executions
    record = await asyncio.to_thread(svc.create, body.get("prompt"), body.get("workflow"), body.get("template"),
                                     body.get("environment"), body.get("client_id"))
    return json_ok({"execution_id": record["id"], "prompt_id": record["prompt_id"], "execution": record},
                   status=202)


async def list_executions(request: web.Request, ctx: Context) -> web.Response:
    state = request.query.get("state")
    if state is not None and state not in STATES:
        raise BadRequest(f"state must be one of {', '.join(STATES)}")
    limit = query_int(request, "limit", 50, 1, 500)
    records = await asyncio.to_thread(ctx.services.executions.list, state, request.query.get("template"), limit)
    return json_ok({"executions": records})


async def get_execution(request: web.Request, ctx: Context) -> web.Response:
    record = await asyncio.to_thread(ctx.services.executions.get, request.match_info["id"])
    return json_ok({k: v for k, v in record.items() if k != "client_id"})


async def cancel_execution(request: web.Request, ctx: Context) -> web.Response:
    return json_ok(await asyncio.to_thread(ctx.services.executions.cancel, request.match_info["id"]))


ROUTES = [
    ("GET", "/executions", list_executions),
    ("POST", "/executions", create_execution),
    ("GET", "/executions/{id}", get_execution),
    ("POST", "/executions/{id}/cancel", cancel_execution),
]
