"""The Connect panel's routes: the effective configuration (never a credential), a Check of each AWS
prerequisite, and a change of the configuration applied without restarting ComfyUI.

GET  /connect        {effective, startup_error, applied, from_environment, editable,
                      file: {error, differs, values}}: `values` is what the file would apply (token as
                      set or not), for the panel to say what "Apply the file" changes
POST /connect/check  {changes?, replace?} -> {results: [{name, status, detail, fix}]} for the configuration
                     the changes would make (nothing written)
POST /connect/doctor {instance_type?} -> {lines: [{name, status: pass|fail|skip, detail, fix}]}: aws doctor
                     (aws/doctor.py) on the configuration that runs, with real calls on doctor/ keys
PUT  /config         {changes, replace?} -> writes config.json, applies it, {effective, applied}
POST /config/reload  -> applies config.json as it is now (fixed or edited by hand), {effective, applied}

A ComfyUI whose configuration could not be read at start runs fail-safe, with an artist's rights (Extension.
effective_config): it cannot make itself a designer's from the page; the file (then Reload) or the environment
can.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from ..core import config as config_mod
from ..core.config import Config, ConfigInvalid
from ..core.errors import message_of
from . import guard
from .context import Context
from .http import json_ok, shapes, the
from .schemas import ConfigChange, Doctor


def _view(cfg: Config) -> dict:
    """What the panel shows: Config.public() (the token as set or not)."""
    return cfg.public()


async def get_connect(request: web.Request, ctx: Context) -> web.Response:
    directory, running = ctx.facts.config_dir, ctx.extension.config
    body: dict = {"effective": _view(running) if running is not None else None,
                  "startup_error": ctx.config_error, "role": ctx.effective_config().role,
                  "from_environment": config_mod.from_environment(),
                  "editable": list(config_mod.EDITABLE), "applied": ctx.applied}
    try:
        on_disk = await asyncio.to_thread(config_mod.load, directory)
        body["file"] = {"error": None, "differs": running is None or on_disk != running,
                        "values": _view(on_disk)}
    except ConfigInvalid as err:  # edited by hand into something broken: the services keep the last good one
        body["file"] = {"error": err.message, "differs": True, "values": None}
    return json_ok(body)


@shapes(body=ConfigChange)
async def check(request: web.Request, ctx: Context) -> web.Response:
    body = the(request, ConfigChange)
    _, cfg = await asyncio.to_thread(config_mod.preview, ctx.facts.config_dir, body.changes or {},
                                     body.replace, acting_role=ctx.effective_config().role,
                                     last_good=ctx.extension.file_values)
    return json_ok({"results": await asyncio.to_thread(run_checks, cfg)})


def run_checks(cfg: Config) -> list[dict]:
    from ..stores import make_store

    if cfg.store == "folder":
        try:
            make_store(cfg).list_page("templates/", "", 1)
            store = {"name": "store", "status": "ok", "detail": "the folder store on this machine", "fix": ""}
        except Exception as err:
            store = {"name": "store", "status": "failed", "detail": message_of(err),
                     "fix": "check store_path"}
        return [store, {"name": "AWS", "status": "ok", "detail": "not used: local endpoints run on this machine",
                        "fix": "set store to s3 (or run aws setup) for SageMaker endpoints"}]
    from ..aws.clients import client
    from ..aws.connect import check as aws_check

    return aws_check(cfg, lambda service: client(service, cfg.region))


@shapes(body=Doctor)
async def doctor(request: web.Request, ctx: Context) -> web.Response:
    instance_type = the(request, Doctor).instance_type
    return json_ok({"lines": await asyncio.to_thread(run_doctor, ctx.effective_config(), instance_type)})


def run_doctor(cfg: Config, instance_type: str | None) -> list[dict]:
    from ..aws.doctor import SKIP, Target, line, run

    if cfg.store != "s3" or not cfg.s3_bucket:
        return [line("store", SKIP, "the store is not S3: there is no AWS set-up to check",
                     "set store to s3 (or run aws setup) for SageMaker endpoints")]
    from ..aws.clients import client

    target = Target(cfg.s3_bucket, cfg.s3_prefix, cfg.region, cfg.worker_image_uri, instance_type)
    return run(target, lambda service: client(service, cfg.region))


@shapes(body=ConfigChange)
async def put_config(request: web.Request, ctx: Context) -> web.Response:
    body = the(request, ConfigChange)
    changes, replace = body.changes or {}, body.replace
    return await _applied(ctx, lambda: ctx.change_config(changes, replace))


async def reload_config(request: web.Request, ctx: Context) -> web.Response:
    return await _applied(ctx, ctx.reload_file)


async def _applied(ctx: Context, change: Callable[[], Config]) -> web.Response:
    before = ctx.effective_config().token
    was_gated = guard.token_required(ctx.facts.listen, before)
    cfg = await asyncio.to_thread(change)
    # To the pages that received broadcasts until now, as they were gated until now.
    ctx.events.send("sagemaker.changed", {"collection": "config"}, required=was_gated)
    if cfg.token != before:
        ctx.events.forget_subscribers()  # from now on only pages that subscribe with the new token
    return json_ok({"effective": _view(cfg), "applied": ctx.applied})


ROUTES = [
    ("GET", "/connect", get_connect),
    ("POST", "/connect/check", check),
    ("POST", "/connect/doctor", doctor),
    ("PUT", "/config", put_config),
    ("POST", "/config/reload", reload_config),
]
