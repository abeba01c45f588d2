"""The door of a worker's own ComfyUI: only its worker comes in.

A worker (worker/comfy.py) starts each headless ComfyUI with `SM_WORKER_COMFYUI=1` and a random secret
of its own in `SM_WORKER_COMFYUI_SECRET`. Inside that ComfyUI this middleware runs before everything
else, ComfyUI's own routes and websocket included: a request without the secret in `X-Worker-ComfyUI`,
with a Host that is not loopback (a DNS-rebinding page) or with any Origin (a browser page) is refused.
Without a secret in its environment it refuses every request (fail safe). Nothing else may run prompts
on the endpoint or jump its queue.
"""

from __future__ import annotations

import hmac
import os

from aiohttp import web

from ..core.worker_contract import INNER_SECRET_ENV, INNER_SECRET_HEADER, WORKER_COMFYUI_ENV
from .guard import _hostname, is_loopback


def inside_worker() -> bool:
    return os.environ.get(WORKER_COMFYUI_ENV) == "1"


def _refused(message: str) -> web.Response:
    return web.json_response({"error": {"code": "forbidden", "message": message}}, status=403)


def door(secret: str):
    @web.middleware
    async def worker_comfyui_door(request: web.Request, handler):
        if not secret:
            return _refused(f"this ComfyUI belongs to a worker that gave it no {INNER_SECRET_ENV}: it serves nobody")
        if not is_loopback(_hostname(request.headers.get("Host", ""))):
            return _refused("this ComfyUI is a worker's own: Host must be loopback")
        if "Origin" in request.headers:
            return _refused("this ComfyUI is a worker's own: it takes no requests from browser pages")
        if not hmac.compare_digest(request.headers.get(INNER_SECRET_HEADER, "").encode(), secret.encode()):
            return _refused(f"this ComfyUI is a worker's own: missing or wrong {INNER_SECRET_HEADER} header")
        return await handler(request)

    return worker_comfyui_door


def install(app: web.Application) -> bool:
    """Inside a worker's ComfyUI, put the door first in `app`'s middlewares; True if it was put."""
    if not inside_worker():
        return False
    app.middlewares.insert(0, door(os.environ.get(INNER_SECRET_ENV, "")))
    return True
