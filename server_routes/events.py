"""POST /sagemaker/events/subscribe: a browser asks for the extension's broadcasts (see event_gate.py), and says
it looks at this ComfyUI (core/pages.py: renewed every minute while it is visible; the change feed reads the
store only while a page looks)."""

from __future__ import annotations

from aiohttp import web

from .context import Context
from .http import json_ok, shapes, the
from .schemas import Subscribe


@shapes(body=Subscribe)
async def subscribe(request: web.Request, ctx: Context) -> web.Response:
    client_id = the(request, Subscribe).client_id
    ctx.events.subscribe(client_id)
    ctx.extension.pages.subscribe(client_id)
    return json_ok({"subscribed": True})


ROUTES = [("POST", "/events/subscribe", subscribe)]
