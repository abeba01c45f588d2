"""POST /sagemaker/events/subscribe: a browser asks for the extension's broadcasts (see event_gate.py)."""

from __future__ import annotations

from aiohttp import web

from ..core.errors import BadRequest
from .context import Context
from .http import json_ok, read_object


async def subscribe(request: web.Request, ctx: Context) -> web.Response:
    body = await read_object(request, {"client_id"})
    client_id = body.get("client_id")
    if not isinstance(client_id, str) or not 1 <= len(client_id) <= 200:
        raise BadRequest("client_id must be the page's ComfyUI client id")
    ctx.events.subscribe(client_id)
    return json_ok({"subscribed": True})


ROUTES = [("POST", "/events/subscribe", subscribe)]
