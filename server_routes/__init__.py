"""The extension's HTTP face: aiohttp handlers under /sagemaker/ (and ComfyUI's /api/ alias)."""

from __future__ import annotations

import logging
import threading

from aiohttp import web

from . import analysis, endpoints, environments, executions, meta, templates
from .context import ComfyFacts, Context
from .http import middleware

ROUTE_TABLES = [meta.ROUTES, templates.ROUTES, analysis.ROUTES, environments.ROUTES, endpoints.ROUTES,
                executions.ROUTES]


def register(routes: web.RouteTableDef, app: web.Application, facts: ComfyFacts) -> Context:
    """Add the routes to ComfyUI's table and put the extension's middleware first."""
    ctx = Context.load(facts)
    for table in ROUTE_TABLES:
        for method, path, fn in table:

            async def handler(request: web.Request, fn=fn) -> web.StreamResponse:
                return await fn(request, ctx)

            routes.route(method, "/sagemaker" + path)(handler)
    app.middlewares.insert(0, middleware(ctx))
    if ctx.config_error is None:
        # Re-adopt (or restart) local endpoints left by the previous run, off the start-up path.
        threading.Thread(target=_adopt, args=(ctx,), name="sagemaker-adopt", daemon=True).start()
    return ctx


def _adopt(ctx: Context) -> None:
    try:
        ctx.services.executions.fail_interrupted()
        ctx.services.endpoints.provider("local").adopt()
    except Exception:  # never break ComfyUI's start-up; the endpoint list shows what is wrong
        logging.getLogger("comfyui_sagemaker").exception("re-adopting local endpoints failed")
