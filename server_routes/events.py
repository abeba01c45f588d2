"""POST /sagemaker/events/subscribe: a browser asks for the extension's broadcasts (see event_gate.py)."""

from __future__ import annotations

from aiohttp import web

from .context import Context
from .http import json_ok, shapes, the
from .schemas import Subscribe


@shapes(body=Subscribe)
async def subscribe(request: web.Request, ctx: Context) -> web.Response:
    ctx.events.subscribe(the(request, Subscribe).client_id)
    return json_ok({"subscribed": True})


ROUTES = [("POST", "/events/subscribe", subscribe)]
