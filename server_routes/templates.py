"""Template routes: thin handlers over core.templates.TemplateService."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..core.errors import BadRequest
from ..core.templates import UNSET
from .context import RouteContext
from .http import json_ok, read_object

FIELDS = {"name", "workflow", "prompt", "environment"}
UPDATE_FIELDS = {"workflow", "prompt", "environment", "version"}


async def list_templates(request: web.Request, ctx: RouteContext) -> web.Response:
    """Every template; `skipped` [{key, reason}] names those that cannot be read (core/unreadable.py)."""
    templates, skipped = await asyncio.to_thread(ctx.services.templates.listing)
    return json_ok({"templates": templates, "skipped": skipped})


async def create_template(request: web.Request, ctx: RouteContext) -> web.Response:
    body = await read_object(request, FIELDS)
    for field in ("name", "workflow", "prompt"):
        if field not in body:
            raise BadRequest(f"missing field: {field}")
    svc = ctx.services.templates
    template = await asyncio.to_thread(
        svc.create, body["name"], body["workflow"], body["prompt"], body.get("environment")
    )
    return json_ok(template.to_json(), status=201)


async def get_template(request: web.Request, ctx: RouteContext) -> web.Response:
    template = await asyncio.to_thread(ctx.services.templates.get, request.match_info["name"])
    return json_ok(template.to_json())


async def update_template(request: web.Request, ctx: RouteContext) -> web.Response:
    body = await read_object(request, UPDATE_FIELDS)
    template = await asyncio.to_thread(
        ctx.services.templates.update,
        request.match_info["name"],
        environment=body.get("environment", UNSET) if "environment" in body else UNSET,
        workflow=body.get("workflow"),
        prompt=body.get("prompt"),
        expected_version=body.get("version"),
    )
    return json_ok(template.to_json())


async def delete_template(request: web.Request, ctx: RouteContext) -> web.Response:
    await asyncio.to_thread(ctx.services.templates.delete, request.match_info["name"])
    return web.Response(status=204)


ROUTES = [
    ("GET", "/templates", list_templates),
    ("POST", "/templates", create_template),
    ("GET", "/templates/{name}", get_template),
    ("PUT", "/templates/{name}", update_template),
    ("DELETE", "/templates/{name}", delete_template),
]
