"""The worker's log is about the work: the polls (`GET /status` every 2 s from the extension, `GET /ping` from
SageMaker) are not logged unless they fail; its texts count ComfyUIs in words (issue 32, point 7)."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from aiohttp import web
from comfyui_sagemaker.worker import lifecycle, server
from comfyui_sagemaker.worker.access_log import QuietPollsAccessLogger


def test_answered_polls_are_not_logged_other_requests_and_failed_polls_are(caplog):
    failing = {"now": False}

    async def status(_request: web.Request) -> web.Response:
        return web.json_response({}, status=503 if failing["now"] else 200)

    async def ok(_request: web.Request) -> web.Response:
        return web.json_response({})

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/status", status)
        app.router.add_get("/ping", ok)
        app.router.add_post("/invocations", ok)
        runner = web.AppRunner(app, access_log_class=QuietPollsAccessLogger)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as s:
                for _ in range(3):
                    (await s.get("/status")).release()
                    (await s.get("/ping")).release()
                (await s.post("/invocations", json={})).release()
                failing["now"] = True
                (await s.get("/status")).release()
        finally:
            await runner.cleanup()

    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        asyncio.run(main())
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(lines) == 2, lines
    assert '"POST /invocations' in lines[0]
    assert '"GET /status' in lines[1] and " 503 " in lines[1]


def test_the_worker_serves_with_the_quiet_access_log(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(server.web, "run_app", lambda _app, **kw: seen.update(kw))
    monkeypatch.setattr(server, "Worker", lambda _settings: type("W", (), {"state": "ready", "s": _settings})())
    monkeypatch.setattr(server, "build_app", lambda _worker: web.Application())
    server.serve(type("S", (), {"host": "127.0.0.1", "port": 0})())  # type: ignore[arg-type]
    assert seen["access_log_class"] is QuietPollsAccessLogger


def test_comfyuis_are_counted_in_words():
    assert lifecycle.comfyuis(1) == "1 ComfyUI"
    assert lifecycle.comfyuis(4) == "4 ComfyUIs"
