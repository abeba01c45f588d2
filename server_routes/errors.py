"""One place that turns failures into HTTP: each error class has one status."""

from __future__ import annotations

import logging

from aiohttp import web

from ..aws.errors import AwsError, AwsNotConfigured, InstanceTypeRefused, QuotaExceeded
from ..core import errors as e
from ..core.config import ConfigRefused, RoleRaiseRefused
from ..core.endpoints import EndpointNotFound, EndpointNotReady, InvocationFailed
from ..core.environments import EnvironmentExists
from ..core.fs.files import NotARegularFile
from ..core.net.fetch import DownloadFailed
from ..core.parameters import InputsInvalid, ParametersInvalid
from ..core.preflight import PromptRefused
from ..core.store import BlobCorrupt, BlobMismatch
from ..core.v2.assets import BlobNotFound, HashMismatch, MissingAsset
from ..core.v2.idempotency import IdempotencyConflict, IdempotencyKeyReuse
from ..core.v2.jobs_v2 import InvalidWorkflow, StatusFilterInvalid
from .guard import TokenRefused
from .policy import ForbiddenForRole
from .schemas import Error, ErrorDetail

log = logging.getLogger("comfyui_sagemaker")

STATUS: dict[type[e.SageMakerError], int] = {
    e.BadRequest: 400,
    e.NameInvalid: 400,
    e.Forbidden: 403,
    ForbiddenForRole: 403,
    e.NotFound: 404,
    e.PayloadTooLarge: 413,
    e.ConfigInvalid: 500,
    ConfigRefused: 400,
    RoleRaiseRefused: 403,
    e.Conflict: 409,
    e.TemplateExists: 409,
    e.StoreUnavailable: 502,
    e.RecordCorrupt: 502,
    NotARegularFile: 502,  # a FIFO, device or socket where the store or disk should have a file
    BlobMismatch: 409,
    BlobCorrupt: 502,
    EnvironmentExists: 409,
    EndpointNotReady: 409,
    EndpointNotFound: 404,
    InvocationFailed: 502,
    DownloadFailed: 502,
    AwsError: 502,
    AwsNotConfigured: 400,
    QuotaExceeded: 409,
    InstanceTypeRefused: 400,
    ParametersInvalid: 400,
    InputsInvalid: 422,
    PromptRefused: 400,
    # the Comfy API v2's own codes (core/v2/jobs_v2.py, core/v2/assets.py, core/v2/idempotency.py)
    InvalidWorkflow: 422,
    MissingAsset: 422,
    HashMismatch: 409,
    BlobNotFound: 404,
    IdempotencyKeyReuse: 422,
    IdempotencyConflict: 409,
    StatusFilterInvalid: 400,  # a list filter the protocol's way (its invalid_metadata_filter is a 400 too)
}

# The v2 face (server_routes/v2.py) speaks the Comfy API v2's protocol: validation failures are 422, a
# missing token 401 `unauthorized`, an endpoint not serving yet 429 `deployment_not_ready` with Retry-After
# (clients retry), none at all 422 `deployment_stopped`, the store, AWS or an endpoint failing 500
# `upstream_error` with a generic message (what failed, which names buckets, keys and hosts, goes to the log
# only). Everything else as above: what the store holds but cannot be read stays a 502 that names it (a corrupt
# record, `blob_corrupt`), since it fails that one thing, not the service.
UPSTREAM = (500, "upstream_error")
V2: dict[type[e.SageMakerError], tuple[int, str | None]] = {
    e.BadRequest: (422, None),
    TokenRefused: (401, "unauthorized"),
    EndpointNotReady: (429, "deployment_not_ready"),
    EndpointNotFound: (422, "deployment_stopped"),
    e.StoreUnavailable: UPSTREAM,
    AwsError: UPSTREAM,
    InvocationFailed: UPSTREAM,
    DownloadFailed: UPSTREAM,
}
UPSTREAM_MESSAGE = "the service behind this API failed; retry later"
RETRY_AFTER = {EndpointNotReady: 10}


def status_of(err: e.SageMakerError) -> int:
    for cls in type(err).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_response(code: str, message: str, status: int, **extra: object) -> web.Response:
    detail = ErrorDetail(code=code, message=message)
    return web.json_response(Error(error={**detail, **extra}), status=status)  # extra: fields, details


def _v2(err: e.SageMakerError) -> tuple[int, str]:
    for cls in type(err).__mro__:
        if cls in STATUS and cls not in V2:
            return STATUS[cls], err.code  # a more specific class of ours decides (e.g. InvalidWorkflow 422)
        if cls in V2:
            status, code = V2[cls]
            return status, code or err.code
    return status_of(err), err.code


def v2_message(err: e.SageMakerError) -> str:
    """What the v2 face says of `err`, in an answer or an event stream: an upstream failure's generic words (its
    own, which name buckets, keys and hosts, go to the log), else its message."""
    if _v2(err)[1] != UPSTREAM[1]:
        return err.message
    log.warning("comfyui-sagemaker: a Comfy API v2 request failed upstream: %s: %s", err.code, err.message)
    return UPSTREAM_MESSAGE


def from_exception(err: e.SageMakerError, face: str = "sagemaker") -> web.Response:
    """The error's JSON answer; `face` "v2" for the Comfy API v2 routes (their statuses, `details`)."""
    if face == "v2":
        status, code = _v2(err)
        if code == UPSTREAM[1]:
            return error_response(code, v2_message(err), status)
        details, fields = err.details, err.fields
        if isinstance(fields, dict):
            details = {**(details or {}), "fields": fields}
        if isinstance(err, PromptRefused):
            details = {"node_errors": err.node_errors}
        response = error_response(code, err.message, status, **({"details": details} if details else {}))
        retry = err.retry_after or next(
            (v for cls, v in RETRY_AFTER.items() if isinstance(err, cls)), None)
        if retry:
            response.headers["Retry-After"] = str(retry)
        return response
    # Per-field reasons (invalid_inputs) travel next to the message: {"error": {..., "fields": {name: reason}}}.
    fields = err.fields
    extra: dict[str, object] = {"fields": fields} if isinstance(fields, dict) else {}
    details = err.details
    if isinstance(details, dict):
        extra["details"] = details
    if isinstance(err, PromptRefused):
        # /prompt's own 400: {"error": {type, message, details, extra_info}, "node_errors": {...}}, with our
        # code beside, so ComfyUI's frontend outlines the nodes and shows its own messages.
        comfy = {k: err.comfy_error.get(k) for k in ("type", "details", "extra_info") if k in err.comfy_error}
        body = {"error": {"code": err.code, "message": err.comfy_error.get("message") or err.message, **comfy},
                "node_errors": err.node_errors}
        return web.json_response(body, status=status_of(err))
    return error_response(err.code, err.message, status_of(err), **extra)
