"""Environment and task routes: thin handlers over core.environments and core.tasks."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..core.errors import BadRequest
from . import deprecation
from .context import Context
from .http import json_ok, read_object, shapes, the
from .schemas import (
    EnvironmentDeleteQuery,
    EnvironmentPublish,
    EnvironmentQuery,
    EnvironmentRollback,
    EnvironmentRollbackQuery,
    EnvironmentsList,
    EnvironmentVersions,
    parse,
)


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


@shapes(body=EnvironmentRollback, query=EnvironmentRollbackQuery, read=False, required=False)
async def rollback_environment(request: web.Request, ctx: Context) -> web.Response:
    """The endpoint serves an older version again (`to` in the body or the query; default the one before the
    serving version): what was kept of it is reused, nothing is uploaded. 202: it follows as a deploy does."""
    to = the(request, EnvironmentRollbackQuery).to
    if request.body_exists:  # the body is optional: an empty POST takes the default
        body = parse(EnvironmentRollback, await read_object(request)).to
        if body is not None and to is not None and body != to:
            raise BadRequest(f"the body says to={body} and the query to={to}: say it once")
        to = body if body is not None else to
    view = await asyncio.to_thread(ctx.services.environments.rollback, request.match_info["name"], to)
    return json_ok(view, status=202)


@shapes(answer=EnvironmentVersions)
async def environment_versions(request: web.Request, ctx: Context) -> web.Response:
    return json_ok(await asyncio.to_thread(ctx.services.environments.history, request.match_info["name"]))


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
    ("POST", "/environments/{name}/rollback", rollback_environment),
    ("GET", "/environments/{name}/versions", environment_versions),
    ("GET", "/tasks/{id}", get_task),
    ("POST", "/tasks/{id}/cancel", cancel_task),
]
ROUTES += deprecation.aliases(ROUTES)  # /jobs/{id}: the same handlers, answered with a Deprecation header
