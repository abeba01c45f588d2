"""Environment and task routes: thin handlers over core.environments and core.tasks."""

from __future__ import annotations

import asyncio

from aiohttp import web

from . import deprecation
from .context import Context
from .http import json_ok, shapes, the
from .schemas import EnvironmentDeleteQuery, EnvironmentPublish, EnvironmentQuery, EnvironmentsList


@shapes(answer=EnvironmentsList)
async def list_environments(request: web.Request, ctx: Context) -> web.Response:
    """Every environment (one whose manifest cannot be read with its `problem`); `skipped` [{key, reason}]."""
    environments, skipped = await asyncio.to_thread(ctx.services.environments.listing)
    return json_ok(EnvironmentsList(environments=environments, skipped=skipped))


@shapes(body=EnvironmentPublish)
async def publish_environment(request: web.Request, ctx: Context) -> web.Response:
    body = the(request, EnvironmentPublish)
    task = await asyncio.to_thread(
        ctx.services.environments.publish, body.name, body.templates, body.include, body.endpoint, body.bind,
        body.warmup,
    )
    return json_ok(deprecation.task_started(task.to_json()), status=202)


@shapes(query=EnvironmentQuery)
async def get_environment(request: web.Request, ctx: Context) -> web.Response:
    svc = ctx.services.environments
    return json_ok(await asyncio.to_thread(svc.get, request.match_info["name"], the(request, EnvironmentQuery).version))


@shapes(query=EnvironmentDeleteQuery)
async def delete_environment(request: web.Request, ctx: Context) -> web.Response:
    force = the(request, EnvironmentDeleteQuery).force
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
