"""Execution routes: Prompt on AWS."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..core.names import TEMPLATE_NAME
from ..core.records import ExecutionSummary
from .context import RouteContext
from .http import json_ok, shapes, the
from .schemas import ExecutionAnswer, ExecutionCreate, ExecutionCreated, ExecutionsPage, ExecutionsQuery


@shapes(body=ExecutionCreate, answer=ExecutionCreated)
async def create_execution(request: web.Request, ctx: RouteContext) -> web.Response:
    body = the(request, ExecutionCreate)
    svc = ctx.services.executions
    record = await asyncio.to_thread(svc.create, body.prompt, body.workflow, body.template, body.environment,
                                     body.client_id, ctx.user(request), body.template_version)
    return json_ok(ExecutionCreated(execution_id=record["id"], prompt_id=record["prompt_id"], execution=record),
                   status=202)


@shapes(query=ExecutionsQuery, answer=ExecutionsPage)
async def list_executions(request: web.Request, ctx: RouteContext) -> web.Response:
    """A page of runs, newest first: this ComfyUI's (`owner=me`, the default), everyone's (`owner=all`)
    or one owner's; `next` is the cursor (`after`) of the next page; `skipped` [{key, reason}] the records of
    this page that cannot be read (core/unreadable.py)."""
    q = the(request, ExecutionsQuery)
    if q.template is not None:
        TEMPLATE_NAME.check(q.template)
    records, cursor, skipped = await asyncio.to_thread(ctx.services.executions.listing, q.owner, q.state, q.template,
                                                       q.limit, q.after, ctx.user(request))
    return json_ok(ExecutionsPage(executions=records, next=cursor, skipped=skipped))


@shapes(answer=ExecutionAnswer)
async def get_execution(request: web.Request, ctx: RouteContext) -> web.Response:
    svc = ctx.services.executions
    user = ctx.user(request)
    record = await asyncio.to_thread(svc.get, request.match_info["id"], user)
    return json_ok({**{k: v for k, v in record.items() if k != "client_id"}, "mine": svc.is_mine(record, user)})


@shapes(answer=ExecutionSummary)
async def cancel_execution(request: web.Request, ctx: RouteContext) -> web.Response:
    return json_ok(await asyncio.to_thread(ctx.services.executions.cancel, request.match_info["id"],
                                           ctx.config.role, ctx.user(request), ctx.shared))


ROUTES = [
    ("GET", "/executions", list_executions),
    ("POST", "/executions", create_execution),
    ("GET", "/executions/{id}", get_execution),
    ("POST", "/executions/{id}/cancel", cancel_execution),
]
