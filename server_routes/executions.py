"""Execution routes: Prompt on AWS."""

from __future__ import annotations

import asyncio
import re

from aiohttp import web

from ..core.errors import BadRequest
from ..core.names import TEMPLATE_NAME
from .context import RouteContext
from .http import json_ok, query_int, read_object

FIELDS = {"prompt", "workflow", "template", "template_version", "environment", "client_id"}
STATES = ("queued", "running", "succeeded", "failed", "cancelled")
OWNER_KEY = re.compile(r"[A-Za-z0-9._-]{1,100}")
# A page's cursor: an index marker's name, or (runs in flight) an execution id.
CURSOR = re.compile(r"([0-9]{20}-)?[0-9]{8}T[0-9]{12}-[0-9a-f]{8}(-[a-z0-9]{12})?(\.[A-Za-z0-9._-]+)?")


async def create_execution(request: web.Request, ctx: RouteContext) -> web.Response:
    body = await read_object(request, FIELDS)
    svc = ctx.services.executions
    record = await asyncio.to_thread(svc.create, body.get("prompt"), body.get("workflow"), body.get("template"),
                                     body.get("environment"), body.get("client_id"), ctx.user(request),
                                     body.get("template_version"))
    return json_ok({"execution_id": record["id"], "prompt_id": record["prompt_id"], "execution": record},
                   status=202)


async def list_executions(request: web.Request, ctx: RouteContext) -> web.Response:
    """A page of runs, newest first: this ComfyUI's (`owner=me`, the default), everyone's (`owner=all`)
    or one owner's; `next` is the cursor (`after`) of the next page; `skipped` [{key, reason}] the records of
    this page that cannot be read (core/unreadable.py)."""
    state = request.query.get("state")
    if state is not None and state not in STATES:
        raise BadRequest(f"state must be one of {', '.join(STATES)}")
    owner = request.query.get("owner", "me")
    if owner not in ("me", "all") and not OWNER_KEY.fullmatch(owner):
        raise BadRequest("owner must be me, all, or an owner key from a record")
    template = request.query.get("template")
    if template is not None:
        TEMPLATE_NAME.check(template)
    after = request.query.get("after")
    if after is not None and not CURSOR.fullmatch(after):
        raise BadRequest("after must be the `next` of a previous page")
    limit = query_int(request, "limit", 10, 1, 500)
    records, cursor, skipped = await asyncio.to_thread(ctx.services.executions.listing, owner, state, template, limit,
                                                       after, ctx.user(request))
    return json_ok({"executions": records, "next": cursor, "skipped": skipped})


async def get_execution(request: web.Request, ctx: RouteContext) -> web.Response:
    svc = ctx.services.executions
    user = ctx.user(request)
    record = await asyncio.to_thread(svc.get, request.match_info["id"], user)
    return json_ok({**{k: v for k, v in record.items() if k != "client_id"}, "mine": svc.is_mine(record, user)})


async def cancel_execution(request: web.Request, ctx: RouteContext) -> web.Response:
    return json_ok(await asyncio.to_thread(ctx.services.executions.cancel, request.match_info["id"],
                                           ctx.config.role, ctx.user(request), ctx.shared))


ROUTES = [
    ("GET", "/executions", list_executions),
    ("POST", "/executions", create_execution),
    ("GET", "/executions/{id}", get_execution),
    ("POST", "/executions/{id}/cancel", cancel_execution),
]
