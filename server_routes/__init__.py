"""The extension's HTTP face: aiohttp handlers under /sagemaker/ (and ComfyUI's /api/ alias). What outlives a
request (start-up work, maintenance, configuration changes, local endpoints) is the Extension's (extension.py)."""

from __future__ import annotations

import atexit
import logging
import sys

from aiohttp import web

from . import (
    analysis,
    connect,
    endpoints,
    environments,
    events,
    executions,
    inputs,
    meta,
    models,
    openapi,
    template_executions,
    templates,
    v2,
    worker_door,
)
from .context import ComfyFacts, Context
from .http import middleware

ROUTE_TABLES = [meta.ROUTES, templates.ROUTES, analysis.ROUTES, environments.ROUTES, endpoints.ROUTES,
                executions.ROUTES, inputs.ROUTES, models.ROUTES, template_executions.ROUTES, openapi.ROUTES,
                events.ROUTES, connect.ROUTES, v2.ROUTES]


def register(routes: web.RouteTableDef, app: web.Application, facts: ComfyFacts) -> Context:
    """Add the routes to ComfyUI's table and put the extension's middleware first (after the door of a
    worker's own ComfyUI, which comes before everything); then the extension starts (until ComfyUI exits)."""
    inner = worker_door.install(app)
    ctx = Context(facts)
    _check_requirements(ctx)
    install(routes, app, ctx, first=not inner)
    # Inside an endpoint's worker the extension only brings its nodes: no watcher, no endpoints.
    if not inner:
        ctx.extension.start()
        atexit.register(ctx.extension.stop)
    return ctx


def install(routes: web.RouteTableDef, app: web.Application, ctx: Context, first: bool = True) -> None:
    """The handlers on `routes`, the middleware on `app` (first, or second behind the worker's door)."""
    for table in ROUTE_TABLES:
        for method, path, fn in table:

            async def handler(request: web.Request, fn=fn) -> web.StreamResponse:
                return await fn(request, ctx)

            routes.route(method, "/sagemaker" + path)(handler)
    app.middlewares.insert(0 if first else 1, middleware(ctx))


def _check_requirements(ctx: Context) -> None:
    """A ComfyUI whose Python lacks our requirements (install.py never ran with it) still loads the
    extension; say once, in its log and in /sagemaker/health, what to run."""
    from ..core.requirements import unmet

    try:
        ctx.missing_requirements = tuple(unmet())
    except (OSError, ValueError):
        return
    if ctx.missing_requirements:
        logging.getLogger("comfyui_sagemaker").warning(
            "comfyui-sagemaker: this Python lacks %s; run: %s %s", "; ".join(ctx.missing_requirements),
            sys.executable, ctx.facts.extension_dir / "install.py")
