"""Input sync routes: what is synced, and the watcher's switch."""

from __future__ import annotations

import asyncio

from aiohttp import web

from .context import Context
from .http import json_ok, shapes, the
from .schemas import Watcher


async def list_inputs(request: web.Request, ctx: Context) -> web.Response:
    svc = ctx.services

    def read() -> tuple[list[dict], bool]:  # the index and the switch are files: off the event loop
        return svc.input_sync.entries(), svc.watcher_enabled()

    files, enabled = await asyncio.to_thread(read)
    counts = {state: sum(1 for f in files if f["state"] == state) for state in ("synced", "pending", "failed")}
    return json_ok({"watcher": {"enabled": enabled, "running": svc.input_watcher.running},
                    "counts": counts, "files": files})


@shapes(body=Watcher)
async def set_watcher(request: web.Request, ctx: Context) -> web.Response:
    enabled = the(request, Watcher).enabled
    await asyncio.to_thread(ctx.services.set_watcher, enabled)
    return json_ok({"enabled": enabled, "running": ctx.services.input_watcher.running})


async def rescan(request: web.Request, ctx: Context) -> web.Response:
    return json_ok({"queued": await asyncio.to_thread(ctx.services.input_sync.scan)})


ROUTES = [
    ("GET", "/inputs", list_inputs),
    ("POST", "/inputs/watcher", set_watcher),
    ("POST", "/inputs/scan", rescan),
]
