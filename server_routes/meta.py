"""GET /sagemaker/health and GET /sagemaker/rules."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..core import names
from ..core.version import __version__
from . import guard
from .context import RouteContext
from .http import json_ok, shapes, the
from .schemas import NameCheck


def store_summary(ctx: RouteContext) -> dict:
    cfg = ctx.config
    if cfg.store == "s3":
        return {"kind": "s3", "bucket": cfg.s3_bucket, "prefix": cfg.s3_prefix}
    # Which folder: ComfyUIs of a team on one shared folder see that they are on the same one (the page of an
    # authorized caller only, like the rest of /health's details).
    return {"kind": "folder", "path": cfg.store_path}


async def health(request: web.Request, ctx: RouteContext) -> web.Response:
    """Public (the page must learn that it needs a token); the details only for an authorized caller."""
    cfg = ctx.effective_config()
    required = guard.token_required(ctx.facts.listen, cfg.token)
    if not guard.authorized(request.headers, listen=ctx.facts.listen, token=cfg.token):
        return json_ok({"ok": ctx.config_error is None, "version": __version__, "token_required": required,
                        "authorized": False})
    body: dict = {"ok": ctx.config_error is None, "version": __version__, "comfyui_version": ctx.facts.version,
                  "missing_requirements": list(ctx.missing_requirements), "token_required": required,
                  "authorized": True, "host": ctx.facts.host_status()}
    body["role"] = cfg.role  # while no configuration could be read, the fail-safe one's: an artist's
    if ctx.config_error is None:
        body["store"] = store_summary(ctx)
        owner = ctx.services.executions.owner_for(ctx.user(request))
        body["identity"] = {**owner.to_json(), "key": owner.key}
        body["endpoints"] = "local" if ctx.config.store == "folder" else "sagemaker"
    else:
        body["store"] = None
        body["config_error"] = ctx.config_error
    return json_ok(body)


async def rules(request: web.Request, ctx: RouteContext) -> web.Response:
    return json_ok(names.rules())


@shapes(body=NameCheck)
async def check_name(request: web.Request, ctx: RouteContext) -> web.Response:
    """POST {kind: "template" | "environment", name} -> {valid: true, name} or 400 invalid_name."""
    body = the(request, NameCheck)
    kind = body.kind
    rule = {"template": names.TEMPLATE_NAME, "environment": names.ENVIRONMENT_NAME}[kind]
    name = rule.check(body.name)
    answer: dict = {"valid": True, "name": name}
    if kind == "template" and ctx.config_error is None:
        # Names are case-sensitive ("Slow" and "slow" are two templates): say so before a second one is made.
        taken = [t["name"] for t in await asyncio.to_thread(ctx.services.templates.list)]
        answer["exists"] = name in taken
        answer["similar"] = [n for n in taken if n.lower() == name.lower() and n != name]
    return json_ok(answer)


ROUTES = [
    ("GET", "/health", health),
    ("GET", "/rules", rules),
    ("POST", "/names/check", check_name),
]
