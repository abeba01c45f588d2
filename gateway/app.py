"""The gateway's HTTP server: the extension's own run handlers (server_routes/) behind its own middleware
(guard, policy, JSON errors), plus what a service behind a load balancer needs:

- the token on every route, always (it listens as if beyond loopback: no loopback exemption); the Host it
  is reached by must be loopback, its --host address, or in allowed_hosts;
- `GET /health` (no token: `{"ok", "draining"}` only, 503 while stopping) for the load balancer;
- an access log line per request on stdout (never a header: no token in it);
- runs it follows hold a lease in the store, renewed while it lives: if it is killed outright, another
  replica (or itself, started again) takes them over or fails them once the lease expires (core/followers.py);
- SIGTERM (or SIGINT): stop accepting, let requests in flight finish within --drain-seconds (event
  streams end: their clients reconnect to another replica), then wait the rest of that time for the
  runs this replica follows; those still running are failed (`interrupted`) and stopped on their endpoint,
  and pending webhook deliveries get what time is left.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

from ..core import config as config_mod
from ..core.config import Config
from ..core.errors import ConfigInvalid, SageMakerError
from ..core.fs import scratch
from ..core.host_facts import InterruptDoor
from ..core.version import __version__
from ..server_routes import executions, meta, openapi, template_executions, templates, v2
from ..server_routes.context import RouteContext
from ..server_routes.errors import error_response
from ..server_routes.http import is_ours, json_ok, middleware
from ..services import Services
from ..stores import store_uri
from .host import HeadlessHost, gateway_owner

log = logging.getLogger("comfyui_sagemaker.gateway")
STATE_PREFIX = "sagemaker-gateway-"
ACCESS_FORMAT = '%a "%r" %s %b %Tfs "%{User-Agent}i"'
EXTENSION_DIR = Path(__file__).resolve().parent.parent


def _only(table: list[tuple], *wanted: tuple[str, str]) -> list[tuple]:
    return [route for route in table if (route[0], route[1]) in wanted]


async def gateway_openapi(request: web.Request, ctx) -> web.Response:
    return json_ok(openapi.document(ROUTE_TABLES))


# What the gateway serves: reading templates, running them, following runs, and the Comfy API v2.
ROUTE_TABLES = [
    _only(meta.ROUTES, ("GET", "/health"), ("GET", "/rules")),
    _only(templates.ROUTES, ("GET", "/templates"), ("GET", "/templates/{name}")),
    _only(template_executions.ROUTES, ("POST", "/templates/{name}/executions")),
    _only(executions.ROUTES, ("GET", "/executions"), ("GET", "/executions/{id}"), ("POST", "/executions/{id}/cancel")),
    v2.ROUTES,
    [("GET", "/openapi.json", gateway_openapi)],
]


class Facts:
    """The few facts about "this ComfyUI" the shared handlers read (server_routes/context.py's RouteFacts); the
    gateway has no ComfyUI."""

    def __init__(self, listen: tuple[str, ...]):
        self.listen = listen
        self.version = None
        self.multi_user = False
        self.interrupt = InterruptDoor()  # no ComfyUI Cancel to answer

    def host_status(self) -> None:
        return None  # no host surfaces


class GatewayContext(RouteContext):
    """What the shared handlers get as `ctx` (server_routes/context.py's RouteContext, for a process without
    ComfyUI): the configuration, the services on it, a headless host."""

    # Its configuration was read before it started (or it did not start): never broken, never missing anything.
    config_error = None
    missing_requirements: tuple[str, ...] = ()
    services_made = True

    def __init__(self, config: Config, config_dir: Path | None, listen: str, follow_ttl: float | None = None):
        self._config = config
        self.config_dir = config_dir
        # "0.0.0.0" among the addresses makes the guard require the token everywhere, loopback included.
        self.facts = Facts(tuple({listen, "0.0.0.0"}))
        self.host = HeadlessHost(EXTENSION_DIR)
        # Without a configuration folder, a state folder of its own, named after this process so that the next
        # gateway started on this machine removes it once this one is gone (core/fs/scratch.py).
        self.state_dir = config_dir or Path(tempfile.mkdtemp(prefix=f"{STATE_PREFIX}{scratch.owner_tag()}-"))
        self._services = Services(config, self.host, self.state_dir,
                                  owner=gateway_owner(store_uri(config), config.display_name),
                                  makes_webhook_secret=False, follow_ttl=follow_ttl,
                                  reload_config=lambda: config_mod.load(config_dir))

    @property
    def config(self) -> Config:
        return self._config

    def effective_config(self) -> Config:
        return self._config

    @property
    def services(self) -> Services:
        return self._services

    def user(self, request: web.Request) -> None:
        return None

    # Every caller holds the same token and every replica is one owner: callers change the gateway's own runs,
    # never a ComfyUI's (core/identity.py's may_change_execution), whatever the configured role.
    shared = True


def make_app(ctx: GatewayContext) -> web.Application:
    draining = asyncio.Event()

    @web.middleware
    async def stopping(request: web.Request, handler):
        if request.path != "/health" and not is_ours(request.path):  # no ComfyUI behind: nothing else is here
            return error_response("not_found", f"no route {request.method} {request.path}", 404)
        if draining.is_set() and request.path != "/health":
            response = error_response("draining", "this gateway replica is stopping; retry (another one answers)",
                                      503)
            response.headers["Connection"] = "close"
            response.headers["Retry-After"] = "1"
            return response
        return await handler(request)

    async def health(request: web.Request) -> web.Response:
        return json_ok({"ok": not draining.is_set(), "draining": draining.is_set(), "version": __version__},
                       status=503 if draining.is_set() else 200)

    app = web.Application(middlewares=[stopping, middleware(ctx)])
    app["draining"] = draining
    app.router.add_get("/health", health)
    for table in ROUTE_TABLES:
        for method, path, fn in table:

            async def handler(request: web.Request, fn=fn) -> web.StreamResponse:
                return await fn(request, ctx)

            app.router.add_route(method, "/sagemaker" + path, handler)
    return app


def check(config: Config) -> None:
    """What the gateway refuses to start without, said before it listens."""
    if not config.token:
        raise ConfigInvalid("the gateway needs a token (every route requires it): set token in config.json or "
                             "COMFYUI_SAGEMAKER_TOKEN")


def serve(config_dir: Path | None, host: str, port: int, drain_seconds: float,
          run_lease_seconds: float | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(name)s %(message)s")
    config = config_mod.load(config_dir)
    check(config)
    if run_lease_seconds is not None and not 1 <= run_lease_seconds <= 3600:
        raise ConfigInvalid("--run-lease-seconds must be from 1 to 3600")
    ctx = GatewayContext(config, config_dir, host, run_lease_seconds)
    return asyncio.run(_run(ctx, host, port, drain_seconds))


def _webhooks(services: Services) -> str:
    """Whether this replica can sign webhooks, said once at start (the operator sees a missing secret)."""
    try:
        services.webhooks.secret.keys()
        return "signed with the secret this replica was given"
    except SageMakerError as err:
        return f"a webhook_url is refused ({err.message})"


async def _run(ctx: GatewayContext, host: str, port: int, drain_seconds: float) -> int:
    app = make_app(ctx)
    runner = web.AppRunner(app, access_log=logging.getLogger("comfyui_sagemaker.gateway.access"),
                           access_log_format=ACCESS_FORMAT, shutdown_timeout=drain_seconds)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    services = ctx.services
    # Runs a killed replica (or this one's previous life) left: taken over or failed (core/followers.py); and
    # the temporary files a killed gateway left (uploads being received, its own state folder).
    services.executions.sweeper.start()
    swept = await asyncio.to_thread(lambda: services.sweep() + scratch.sweep(tempfile.gettempdir(), (STATE_PREFIX,),
                                                                              unknown_after=None))
    if swept:
        log.info("removed %d temporary file(s) a stopped process left", len(swept))
    log.info("comfyui-sagemaker gateway %s listening on http://%s:%d; store %s; runs owned by %s (%s)", __version__,
             host, port, store_uri(ctx.config), services.owner.instance, services.owner.name)
    log.info("webhooks: %s", await asyncio.to_thread(_webhooks, services))
    await stop.wait()
    started = time.monotonic()
    log.info("stopping: no new requests; %.0f s for those in flight, then the runs this replica follows",
             drain_seconds)
    app["draining"].set()
    await runner.cleanup()  # stops listening, waits for requests in flight (up to drain_seconds)
    left = max(0.0, drain_seconds - (time.monotonic() - started))
    failed = await asyncio.to_thread(services.executions.drain, left, "the gateway replica following this run "
                                     "stopped before it ended")
    left = max(0.0, drain_seconds - (time.monotonic() - started))
    undelivered = await asyncio.to_thread(services.drain_webhooks, left)
    services.close()
    log.info("stopped (%d run(s) failed as interrupted, %d webhook(s) still being delivered)", failed, undelivered)
    return 0
