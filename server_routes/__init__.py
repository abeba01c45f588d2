"""The extension's HTTP face: aiohttp handlers under /sagemaker/ (and ComfyUI's /api/ alias)."""

from __future__ import annotations

import atexit
import logging
import sys
import threading

from aiohttp import web

from ..core.errors import SageMakerError
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
    template_runs,
    templates,
    v2,
    worker_door,
)
from .context import ComfyFacts, Context
from .http import middleware

ROUTE_TABLES = [meta.ROUTES, templates.ROUTES, analysis.ROUTES, environments.ROUTES, endpoints.ROUTES,
                executions.ROUTES, inputs.ROUTES, models.ROUTES, template_runs.ROUTES, openapi.ROUTES, events.ROUTES,
                connect.ROUTES, v2.ROUTES]


def register(routes: web.RouteTableDef, app: web.Application, facts: ComfyFacts) -> Context:
    """Add the routes to ComfyUI's table and put the extension's middleware first (after the door of a
    worker's own ComfyUI, which comes before everything)."""
    inner = worker_door.install(app)
    ctx = Context.load(facts)
    _check_requirements(ctx)
    for table in ROUTE_TABLES:
        for method, path, fn in table:

            async def handler(request: web.Request, fn=fn) -> web.StreamResponse:
                return await fn(request, ctx)

            routes.route(method, "/sagemaker" + path)(handler)
    app.middlewares.insert(1 if inner else 0, middleware(ctx))
    # Inside an endpoint's worker the extension only brings its nodes: no watcher, no endpoints.
    if not inner:
        ctx.on_services = _start_background  # again when the Connect panel applies another configuration
        if ctx.config_error is None:
            _start_background(ctx)
    return ctx


def _start_background(ctx: Context) -> None:
    threading.Thread(target=_background, args=(ctx,), name="sagemaker-start", daemon=True).start()


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


def _background(ctx: Context) -> None:
    """Off ComfyUI's start-up path: fail runs a restart interrupted, re-adopt (or restart) local
    endpoints, start the input watcher."""
    log = logging.getLogger("comfyui_sagemaker")
    try:
        svc = ctx.services
    except SageMakerError:
        return
    first, ctx.background_ran = not ctx.background_ran, True

    def watch() -> None:
        if svc.watcher_enabled():
            svc.input_watcher.start()
            atexit.register(svc.input_watcher.stop)

    steps = {
        "sweeping temporary files": svc.sweep,
        "failing this ComfyUI's interrupted executions": lambda: svc.executions.fail_interrupted(),
        "re-adopting local endpoints": lambda: svc.endpoints.provider("local").adopt(),
        # Runs whose follower (a ComfyUI or gateway replica on the store) was killed: taken over or failed.
        "looking for runs whose follower stopped": lambda: svc.executions.sweeper.start(),
    }
    if not first:  # a configuration applied while ComfyUI runs: no restart interrupted anything
        del steps["failing this ComfyUI's interrupted executions"], steps["re-adopting local endpoints"]
    steps |= {
        "starting the input watcher": watch,
        # Other ComfyUIs' changes on the store reach this one's browsers.
        "watching the store for changes": lambda: svc.changes.start(
            lambda collection: svc.send_event("sagemaker.changed", {"collection": collection})),
    }
    for what, step in steps.items():
        try:
            step()
        except Exception:  # never break ComfyUI; the sidebar shows what is wrong
            log.exception("comfyui-sagemaker: %s failed", what)
    if svc.config.role == "designer" and not svc.closed.is_set():
        threading.Thread(target=_maintenance, args=(svc,), name="sagemaker-maintenance", daemon=True).start()


def _maintenance(svc, every: float = 3600.0) -> None:
    """A designer's ComfyUI keeps the shared store tidy, starting an hour after start-up (no start-up work
    grows with the store): the template index checked against the templates themselves (hourly),
    idempotency keys past their 24 hours removed (hourly), execution records past their retention removed
    (daily)."""
    log = logging.getLogger("comfyui_sagemaker")
    hours = 0
    while not svc.closed.wait(every):  # until another configuration's services take over
        hours += 1
        for what, due, step in (("rebuilding the template index", True, svc.templates.reconcile),
                                ("removing expired idempotency keys", True, svc.idempotency.remove_expired),
                                ("applying the execution retention", hours % 24 == 1, svc.apply_retention)):
            if not due:
                continue
            try:
                step()
            except Exception:
                log.exception("comfyui-sagemaker: %s failed", what)
