"""The extension's HTTP face: aiohttp handlers under /sagemaker/ (and ComfyUI's /api/ alias)."""

from __future__ import annotations

from aiohttp import web

from . import analysis, environments, meta, templates
from .context import ComfyFacts, Context
from .http import middleware

ROUTE_TABLES = [meta.ROUTES, templates.ROUTES, analysis.ROUTES, environments.ROUTES]


def register(routes: web.RouteTableDef, app: web.Application, facts: ComfyFacts) -> Context:
    """Add the routes to ComfyUI's table and put the extension's middleware first."""
    ctx = Context.load(facts)
    for table in ROUTE_TABLES:
        for method, path, fn in table:

            async def handler(request: web.Request, fn=fn) -> web.StreamResponse:
                return await fn(request, ctx)

            routes.route(method, "/sagemaker" + path)(handler)
    app.middlewares.insert(0, middleware(ctx))
    return ctx
