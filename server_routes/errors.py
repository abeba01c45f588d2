"""One place that turns failures into HTTP: each error class has one status."""

from __future__ import annotations

from aiohttp import web

from ..aws.errors import AwsError, AwsNotConfigured, InstanceTypeRefused, QuotaExceeded
from ..core import errors as e
from ..core.config import ConfigRefused
from ..core.endpoints import EndpointNotFound, EndpointNotReady, InvocationFailed
from ..core.environments import EnvironmentExists
from ..core.fetch import DownloadFailed
from ..core.parameters import InputsInvalid, ParametersInvalid
from ..core.preflight import PromptRefused
from ..core.store import BlobMismatch
from .policy import ForbiddenForRole

STATUS: dict[type[e.SageMakerError], int] = {
    e.BadRequest: 400,
    e.NameInvalid: 400,
    e.Forbidden: 403,
    ForbiddenForRole: 403,
    e.NotFound: 404,
    e.PayloadTooLarge: 413,
    e.ConfigInvalid: 500,
    ConfigRefused: 400,
    e.Conflict: 409,
    e.TemplateExists: 409,
    e.StoreUnavailable: 502,
    BlobMismatch: 409,
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
}


def status_of(err: e.SageMakerError) -> int:
    for cls in type(err).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_response(code: str, message: str, status: int, **extra: object) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, **extra}}, status=status)


def from_exception(err: e.SageMakerError) -> web.Response:
    # Per-field reasons (invalid_inputs) travel next to the message: {"error": {..., "fields": {name: reason}}}.
    fields = getattr(err, "fields", None)
    extra = {"fields": fields} if isinstance(fields, dict) else {}
    if isinstance(err, PromptRefused):
        # /prompt's own 400: {"error": {type, message, details, extra_info}, "node_errors": {...}}, with our
        # code beside, so ComfyUI's frontend outlines the nodes and shows its own messages.
        comfy = {k: err.comfy_error.get(k) for k in ("type", "details", "extra_info") if k in err.comfy_error}
        body = {"error": {"code": err.code, "message": err.comfy_error.get("message") or err.message, **comfy},
                "node_errors": err.node_errors}
        return web.json_response(body, status=status_of(err))
    return error_response(err.code, err.message, status_of(err), **extra)
