"""Endpoint routes (endpoints are named after their environment)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..core.errors import BadRequest
from ..core.records import EndpointView
from .context import Context
from .http import json_ok, shapes, the
from .schemas import EndpointCreate, EndpointsList, LogsQuery


@shapes(answer=EndpointsList)
async def list_endpoints(request: web.Request, ctx: Context) -> web.Response:
    """Every endpoint, and `unavailable` [{kind, reason}] for a provider that cannot answer now."""
    endpoints, problems = await asyncio.to_thread(ctx.services.endpoints.list_with_problems)
    return json_ok(EndpointsList(endpoints=endpoints, unavailable=problems))


def _deploy(ctx: Context, body: EndpointCreate) -> dict:
    if not isinstance(body.environment, str):
        raise BadRequest("environment must be an environment name")
    return ctx.services.environments.deploy(body.environment, shared=body.shared)


@shapes(body=EndpointCreate)
async def create_endpoint(request: web.Request, ctx: Context) -> web.Response:
    return json_ok(await asyncio.to_thread(_deploy, ctx, the(request, EndpointCreate)), status=202)


@shapes(answer=EndpointView)
async def get_endpoint(request: web.Request, ctx: Context) -> web.Response:
    return json_ok(await asyncio.to_thread(ctx.services.endpoints.get, request.match_info["name"]))


@shapes(query=LogsQuery)
async def endpoint_logs(request: web.Request, ctx: Context) -> web.Response:
    q = the(request, LogsQuery)
    logs = await asyncio.to_thread(ctx.services.endpoints.logs, request.match_info["name"], q.tail, q.contains)
    return json_ok({"name": request.match_info["name"], "logs": logs})


def _stop(ctx: Context, name: str, user: str | None) -> EndpointView:
    services = ctx.services
    name = services.endpoints.get(name)["name"]  # a missing one is a 404 before any run is touched
    # Its runs in flight end "stopped by <this person>" first, not "stopped answering" once the worker is gone.
    services.executions.end_runs_on(name, user)
    return services.endpoints.stop(name)


async def stop_endpoint(request: web.Request, ctx: Context) -> web.Response:
    """Stop an endpoint without removing its environment (billing stops); state Stopped. Its runs in flight
    end cancelled, "stopped by" whoever stopped it."""
    return json_ok(await asyncio.to_thread(_stop, ctx, request.match_info["name"], ctx.user(request)))


async def start_endpoint(request: web.Request, ctx: Context) -> web.Response:
    """Start a stopped endpoint again (state Creating, then InService)"""
    return json_ok(await asyncio.to_thread(ctx.services.endpoints.start, request.match_info["name"]), status=202)


async def delete_endpoint(request: web.Request, ctx: Context) -> web.Response:
    await asyncio.to_thread(ctx.services.endpoints.delete, request.match_info["name"])
    return web.Response(status=204)


ROUTES = [
    ("GET", "/endpoints", list_endpoints),
    ("POST", "/endpoints", create_endpoint),
    ("GET", "/endpoints/{name}", get_endpoint),
    ("GET", "/endpoints/{name}/logs", endpoint_logs),
    ("POST", "/endpoints/{name}/stop", stop_endpoint),
    ("POST", "/endpoints/{name}/start", start_endpoint),
    ("DELETE", "/endpoints/{name}", delete_endpoint),
]
