"""The extension's HTTP face without a ComfyUI process: server_routes' middleware and routes on an aiohttp
app in this process, served on a free 127.0.0.1 port from a thread of its own, on a Context built from plain
ComfyFacts (folders of the test's own). For what needs no ComfyUI: the guard, the role policy, the
configuration, the store's routes. What needs ComfyUI itself (its queue, its nodes, /prompt) stays with
harness.comfyui."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import requests
from aiohttp import web
from comfyui_sagemaker.server_routes import register
from comfyui_sagemaker.server_routes.context import ComfyFacts, Context

from .comfyui import ROOT, comfyui_dir

VERSION = "0.3.75"


class InProcess:
    """`start()` returns when the app listens; `stop()` closes its services and the loop's thread."""

    def __init__(self, base: Path, listen: tuple[str, ...] = ("127.0.0.1",)):
        self.base = Path(base)
        for sub in ("input", "output", "user/__sagemaker"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        self.config_dir = self.base / "user" / "__sagemaker"
        self.listen = listen
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="inprocess-extension", daemon=True)
        self.ctx: Context | None = None
        self.url = ""
        self._runner: web.AppRunner | None = None

    def facts(self) -> ComfyFacts:
        return ComfyFacts(version=VERSION, listen=self.listen, config_dir=self.config_dir,
                          input_dir=self.base / "input", output_dir=self.base / "output", extension_dir=ROOT,
                          comfyui_dir=comfyui_dir())

    def start(self) -> InProcess:
        self.thread.start()
        port = asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result(timeout=60)
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def _serve(self) -> int:
        app = web.Application()
        routes = web.RouteTableDef()
        self.ctx = register(routes, app, self.facts())
        app.add_routes(routes)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def request(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 60)
        return requests.request(method, self.url + path, **kw)

    def stop(self) -> None:
        if self.ctx is not None:
            self.ctx.extension.stop()
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=60)
        self.loop.close()
