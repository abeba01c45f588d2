"""Environment and task routes: thin handlers over core.environments and core.tasks."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..core.errors import BadRequest
from . import deprecation
from .context import Context
from .http import json_ok, query_int, read_object

PUBLISH_FIELDS = {"name", "templates", "include", "endpoint", "bind"}


def _version(request: web.Request) -> int | None:
    return query_int(request, "version", None, 1, 999_999)


async def list_environments(request: web.Request, ctx: Context) -> web.Response:
    """Every environment (one whose manifest cannot be read with its `problem`); `skipped` [{key, reason}]."""
    environments, skipped = await asyncio.to_thread(ctx.services.environments.listing)
    return json_ok({"environments": environments, "skipped": skipped})


async def publish_environment(request: web.Request, ctx: Context) -> web.Response:
    body = await read_object(request, PUBLISH_FIELDS)
    if "name" not in body:
        raise BadRequest("missing field: name")
    task = await asyncio.to_thread(
        ctx.services.environments.publish, body["name"], body.get("templates"), body.get("include", "templates"),
        body.get("endpoint"), body.get("bind", False),
    )
    return json_ok(deprecation.task_started(task.to_json()), status=202)


async def get_environment(request: web.Request, ctx: Context) -> web.Response:
    svc = ctx.services.environments
    return json_ok(await asyncio.to_thread(svc.get, request.match_info["name"], _version(request)))


async def delete_environment(request: web.Request, ctx: Context) -> web.Response:
    force = request.query.get("force", "false").lower() in ("1", "true", "yes")
    await asyncio.to_thread(ctx.services.environments.delete, request.match_info["name"], force)
    return web.Response(status=204)


async def diff_environment(request: web.Request, ctx: Context) -> web.Response:
    return json_ok(await asyncio.to_thread(ctx.services.environments.diff, request.match_info["name"]))


async def get_task(request: web.Request, ctx: Context) -> web.Response:
    """A background task's progress (a publish, a model download)."""
    return json_ok(ctx.services.tasks.get(request.match_info["id"]).to_json())


async def cancel_task(request: web.Request, ctx: Context) -> web.Response:
    return json_ok(ctx.services.tasks.cancel(request.match_info["id"]).to_json())


ROUTES = [
    ("GET", "/environments", list_environments),
    ("POST", "/environments", publish_environment),
    ("GET", "/environments/{name}", get_environment),
    ("DELETE", "/environments/{name}", delete_environment),
    ("GET", "/environments/{name}/diff", diff_environment),
    ("GET", "/tasks/{id}", get_task),
    ("POST", "/tasks/{id}/cancel", cancel_task),
]
ROUTES += deprecation.aliases(ROUTES)  # /jobs/{id}: the same handlers, answered with a Deprecation header
