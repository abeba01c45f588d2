"""What every /sagemaker/ request goes through: the guard, JSON errors, body limits."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from ..core.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge, SageMakerError
from . import deprecation, guard, policy
from .context import RouteContext
from .errors import error_response, from_exception
from .schemas import Query, Shape, parse

log = logging.getLogger("comfyui_sagemaker")

PREFIXES = ("/sagemaker/", "/api/sagemaker/")
MAX_JSON_BYTES = 16 * 1024 * 1024

Handler = Callable[[web.Request, RouteContext], Awaitable[web.StreamResponse]]


def is_ours(path: str) -> bool:
    return path.startswith(PREFIXES) or path in ("/sagemaker", "/api/sagemaker")


V2_PATH = re.compile(r"/v2/[^/]+/api/v2(/.*)?")


def face_of(path: str) -> str:
    """"v2" for the Comfy API v2 routes (their error protocol), else "sagemaker"."""
    return "v2" if V2_PATH.fullmatch(route_path(path)) else "sagemaker"


def route_path(path: str) -> str:
    """/api/sagemaker/health -> /health."""
    for prefix in ("/api/sagemaker", "/sagemaker"):
        if path.startswith(prefix):
            return path[len(prefix):] or "/"
    return path


async def interrupt_remote(request: web.Request, ctx: RouteContext) -> web.Response | None:
    """ComfyUI's own Cancel for a remote run (its prompt id is in ComfyUI's queue, comfy_queue.py), on the paths
    the ComfyUI face found for it (comfy_interrupt.py): cancel that run and answer as ComfyUI does, before
    ComfyUI's handler would interrupt what runs locally. The run's
    owner may (a designer's single-user ComfyUI: anyone's, as ComfyUI's own rule), from this page's origin
    only; someone else's is refused (403), never passed on to ComfyUI, which would interrupt the local prompt.
    Anything else goes on to ComfyUI."""
    if ctx.config_error is not None or not ctx.services_made:
        return None
    try:
        body = json.loads(await request.read() or b"{}")
    except (ValueError, UnicodeDecodeError):
        return None
    prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
    executions = ctx.services.executions
    execution_id = executions.native.execution_of(prompt_id) if isinstance(prompt_id, str) else None
    if execution_id is None:
        return None
    origin = request.headers.get("Origin")
    if origin is not None and urllib.parse.urlsplit(origin).netloc.lower() != request.headers.get("Host", "").lower():
        return error_response("forbidden", f"cross-origin request refused (Origin {origin!r})", 403)
    try:
        await asyncio.to_thread(executions.cancel, execution_id, ctx.config.role, ctx.user(request), ctx.shared)
    except Forbidden as err:  # someone else's run
        return from_exception(err)
    except SageMakerError as err:  # ended meanwhile: as ComfyUI, nothing to interrupt
        log.info("comfyui-sagemaker: interrupt of %s: %s", execution_id, err.message)
    return web.Response(status=200)


def middleware(ctx: RouteContext):
    """Runs first for the extension's paths (it is put ahead of ComfyUI's own
    middlewares), so a refusal is the extension's JSON, not a bare 403."""

    @web.middleware
    async def sagemaker_middleware(request: web.Request, handler):
        response = await answer(request, handler)
        resource = getattr(request.match_info.route, "resource", None)
        if resource is not None and is_ours(request.path):  # an old route's answers (errors too) say it is
            prefix = request.path[:len(request.path) - len(route_path(request.path))]
            response.headers.update(deprecation.headers(route_path(resource.canonical), prefix, request.match_info))
        return response

    async def answer(request: web.Request, handler) -> web.StreamResponse:
        if request.method == "POST" and request.path in ctx.facts.interrupt.paths:
            taken = await interrupt_remote(request, ctx)
            return taken if taken is not None else await handler(request)
        if not is_ours(request.path):
            return await handler(request)
        try:
            guard.check(
                request.method,
                request.headers,
                listen=ctx.facts.listen,
                allowed_hosts=ctx.effective_config().allowed_hosts,
                token=ctx.effective_config().token,
                path=route_path(request.path),
            )
            resource = getattr(request.match_info.route, "resource", None)
            if resource is not None and not is_ours(resource.canonical + "/"):
                # Matched none of ours, only ComfyUI's catch-all static route.
                raise NotFound(f"no route {request.method} {request.path}")
            if resource is not None:
                policy.check(ctx.effective_config().role, request.method, route_path(resource.canonical),
                             ctx.config_error)
            response = await handler(request)
        except SageMakerError as err:
            return from_exception(err, face_of(request.path))
        except web.HTTPException as err:
            if err.status == 404:
                return error_response("not_found", f"no route {request.method} {request.path}", 404)
            if err.status == 405:
                return error_response("method_not_allowed", f"{request.method} is not allowed here", 405)
            if err.status == 413:
                return error_response("payload_too_large", "the request body is too large", 413)
            if err.status < 400:
                raise
            return error_response("http_error", err.reason or str(err.status), err.status)
        except Exception:
            log.exception("comfyui-sagemaker: %s %s failed", request.method, request.path)
            return error_response(
                "internal_error", "internal error in comfyui-sagemaker; see the ComfyUI log", 500
            )
        # Whatever ComfyUI answered for a path of ours (its catch-all 404 is not
        # JSON) becomes the extension's JSON error.
        if response.status >= 400 and response.content_type != "application/json":
            code = "not_found" if response.status == 404 else "http_error"
            message = f"no route {request.method} {request.path}" if response.status == 404 else response.reason
            return error_response(code, message or str(response.status), response.status)
        return response

    return sagemaker_middleware


async def read_json(request: web.Request, limit: int = MAX_JSON_BYTES) -> object:
    """The request body as JSON; PayloadTooLarge over `limit`, BadRequest if not JSON."""
    too_large = PayloadTooLarge(f"request body is over the limit of {limit} bytes ({limit // 2**20} MiB)")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks, size = [], 0
    while chunk := await request.content.read(1024 * 1024):
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        raise BadRequest("request body is empty; send JSON")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise BadRequest(f"request body is not JSON: {err}") from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None


async def read_object(request: web.Request, allowed: set[str] | None = None, limit: int = MAX_JSON_BYTES) -> dict:
    """The body, a JSON object; with `allowed`, a field outside it is a 400 naming the allowed ones."""
    data = await read_json(request, limit)
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    unknown = sorted(set(data) - allowed) if allowed is not None else []
    if unknown:
        raise BadRequest(f"unknown fields: {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
    return data


def json_ok(data: object, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


# A handler's declared shapes (server_routes/schemas.py): validated before it runs, documented by openapi.py.
try:  # aiohttp 3.11 and later: typed request keys (a plain string key warns there)
    from aiohttp.web import RequestKey

    BODY: Any = RequestKey("sagemaker_body", BaseModel)
    QUERY: Any = RequestKey("sagemaker_query", BaseModel)
except ImportError:
    BODY, QUERY = "sagemaker_body", "sagemaker_query"
S = TypeVar("S", bound=Shape)


@dataclass(frozen=True)
class Declared:
    body: type[BaseModel] | None
    query: type[Query] | None
    answer: Any  # a TypedDict of the answer, or None
    media: str  # the body's media type
    read: bool  # False: the handler reads the body itself (multipart, raw bytes, a service that wants it as sent)
    required: bool = True  # False: a body is optional (the handler reads it itself, `read` False)


DECLARED: dict[Callable[..., Any], Declared] = {}


def shapes(body: type[BaseModel] | None = None, query: type[Query] | None = None, answer: Any = None,
           media: str = "application/json", read: bool = True,
           required: bool = True) -> Callable[[Handler], Handler]:
    """Declare what a handler takes and answers. The query (always) and a JSON body (`read`) are validated
    first: a 400 bad_request in the route's words, never the handler's concern; the handler gets them with
    `the(request, Model)`."""

    def declare(fn: Handler) -> Handler:
        @functools.wraps(fn)
        async def handler(request: web.Request, ctx: RouteContext) -> web.StreamResponse:
            if query is not None:
                request[QUERY] = parse(query, dict(request.query))
            if body is not None and read and issubclass(body, Shape):
                request[BODY] = parse(body, await read_object(request))
            return await fn(request, ctx)

        DECLARED[handler] = Declared(body, query, answer, media, read, required)
        return handler

    return declare


def declared(fn: object) -> Declared | None:
    return DECLARED.get(fn)  # type: ignore[arg-type]


def the(request: web.Request, model: type[S]) -> S:
    """The validated body or query of this request (the handler declared `model` with @shapes)."""
    for key in (BODY, QUERY):
        value = request.get(key)
        if isinstance(value, model):
            return value
    raise RuntimeError(f"{model.__name__} was not declared with @shapes on this route")
