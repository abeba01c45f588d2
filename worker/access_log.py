"""The worker's access log without the polls: the extension asks `GET /status` every 2 s while a page shows the
endpoint, and SageMaker (or the local supervisor) asks `GET /ping`; logged, they were most of the endpoint's log.
A poll that fails is still logged; every other request is logged as aiohttp logs it."""

from __future__ import annotations

from aiohttp import web
from aiohttp.web_log import AccessLogger

POLLED = frozenset({"/status", "/ping"})


class QuietPollsAccessLogger(AccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if request.method == "GET" and request.path in POLLED and response.status < 400:
            return
        super().log(request, response, time)
