"""The request and response shapes of the extension's routes, each declared once as a pydantic model: the
handlers validate with them (`@shapes` in server_routes/shape_check.py) and the OpenAPI document
(server_routes/openapi.py) is their JSON schema, so the two cannot differ.

A field the route checks itself is typed here (strict: nothing is coerced, "1" is not 1). A field a service
checks with its own error code (a name: invalid_name, an endpoint config: invalid_endpoint_config, template
inputs: invalid_inputs) is `Any` here, handed on as sent, and documented by `doc(...)`. No aiohttp here: the
floor test imports this module on the lowest pydantic allowed (2.0).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from typing_extensions import NotRequired, TypedDict

from ..core import config as config_mod
from ..core import endpoint_config
from ..core.config import Config
from ..core.errors import BadRequest
from ..core.execution_records import ID_RE
from ..core.proofs import DEFAULT_TOLERANCE, HASH_BITS
from ..core.records import EndpointView, ExecutionRecord, ExecutionSummary
from ..core.shapes import describe

# A page's cursor: an index marker's name, or (runs in flight) an execution id.
CURSOR = r"([0-9]{20}-)?[0-9]{8}T[0-9]{12}-[0-9a-f]{8}(-[a-z0-9]{12})?(\.[A-Za-z0-9._-]+)?"
OWNER_KEY = r"[A-Za-z0-9._-]{1,100}"
STATES = ("queued", "running", "succeeded", "failed", "cancelled")


def doc(schema: dict, default: Any = ..., description: str | None = None) -> Any:
    """A field a service validates (its own code and message): accepted as sent, documented as `schema`."""
    return Field(default, description=description, json_schema_extra=schema)


class Shape(BaseModel):
    """A JSON body: unknown fields refused, nothing coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)
    # The message for any problem (the route's one sentence), or per field; else one made from the schema.
    MESSAGE: ClassVar[str | None] = None
    MESSAGES: ClassVar[dict[str, str]] = {}


class Query(Shape):
    """Query parameters: strings by nature; one not declared is ignored (as ComfyUI's own routes do)."""

    model_config = ConfigDict(extra="ignore", strict=False)


def _digits(value: object) -> object:
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses; pydantic would take "+1", " 1".
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("not a whole number")
    return value


def _words_true(value: object) -> object:
    return value.lower() in ("1", "true", "yes") if isinstance(value, str) else value


def _exactly_true(value: object) -> object:
    return value == "true" if isinstance(value, str) else value


def _empty_none(value: object) -> object:
    return None if value == "" else value


WholeNumber = Annotated[int, BeforeValidator(_digits)]
Flag = Annotated[bool, BeforeValidator(_words_true)]  # ?force=1|true|yes (any case); anything else is false
StrictFlag = Annotated[bool, BeforeValidator(_exactly_true)]  # ?overwrite=true, only so (it replaces a file)

NAME = {"type": "string", "pattern": "^[A-Za-z0-9]{1,20}$", "description": "letters and digits, case-sensitive"}
NAME_OR_NULL = {"type": ["string", "null"]}
GRAPH = {"type": "object", "description": "ComfyUI's UI-format graph (what Save writes)"}
PROMPT = {"type": "object", "description": "ComfyUI's API-format prompt: node id -> {class_type, inputs}"}
INPUTS = {"type": "object", "description": "parameter name -> value, as the template's `parameters` schema says; "
                                           "images as an input-folder file name or base64"}
WEBHOOK_URL = {"type": "string", "format": "uri",
               "description": "gets a signed POST of the run when it ends (docs/http-api.md: Webhooks)"}
CLIENT_ID_DOC = "ComfyUI's websocket client id: that browser gets the run's ComfyUI events"
BLAKE3 = {"type": "string", "pattern": "^blake3:[0-9a-f]{64}$"}
STRINGS = {"type": "array", "items": {"type": "string"}}


def _endpoint_config() -> dict:
    """The endpoint config's schema: its model's (core/endpoint_config.py, which validates it with its own
    code and messages), the nested definitions put in place (this is one field's schema inside another's)."""
    schema = endpoint_config.SPEC.json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(defs[ref.rsplit("/", 1)[1]])
            return {k: inline(v) for k, v in node.items()}
        return [inline(v) for v in node] if isinstance(node, list) else node

    schema["discriminator"] = {"propertyName": "kind"}  # its mapping names the definitions inlined here
    return {**inline(schema), "description": "no endpoint config: publish only; instance counts are capped by "
                                             "the max_instances setting"}


def _config_changes() -> dict:
    """The keys the page may set, from the configuration's own model (core/config.py): null removes one."""
    props = Config.model_json_schema()["properties"]
    return {"type": "object", "additionalProperties": False,
            "description": "configuration keys to set (null removes one; token is write-only); store_path is not "
                           "among them",
            "properties": {k: {"anyOf": [props[k], {"type": "null"}]} for k in config_mod.EDITABLE}}


# bodies

class NameCheck(Shape):
    model_config = ConfigDict(extra="ignore", strict=True)  # as before: other fields are not looked at
    kind: Literal["template", "environment"]
    name: Any = doc({"type": "string", "description": "required (a missing one is invalid_name, as a bad one)"}, None)


class TemplateCreate(Shape):
    name: Any = doc(NAME)
    workflow: Any = doc(GRAPH)
    prompt: Any = doc(PROMPT)
    environment: Any = doc({**NAME_OR_NULL, "description": "the environment it runs on"}, None)


class TemplateUpdate(Shape):
    """Only the fields sent change (`environment: null` unbinds)."""

    environment: Any = doc(NAME_OR_NULL, None)
    workflow: Any = doc(GRAPH, None)
    prompt: Any = doc(PROMPT, None)
    version: Any = doc({"type": "integer", "description": "the version you edited: 409 if it has moved on"}, None)
    environment_version: Any = doc({"type": ["integer", "null"], "minimum": 1, "description": (
        "pin the template to this version of its environment: its runs go only to an endpoint serving it (else "
        "409 endpoint_version_mismatch); null follows the newest (the default); a version not published is 404; "
        "rebinding to another environment unpins")}, None)


class TemplateProofCreate(Shape):
    """Use one of the template's runs as its proof (core/proofs.py)."""

    MESSAGES: ClassVar[dict[str, str]] = {
        "execution_id": "execution_id must be the id of a run of this template",
        "hash_tolerance": "hash_tolerance must be a number of bits from 0 to 64, or null"}
    execution_id: str = Field(pattern=f"^{ID_RE.pattern}$", description="a succeeded run of this template")
    hash_tolerance: int | None = Field(DEFAULT_TOLERANCE, ge=0, le=HASH_BITS, description=(
        "bits of each image's 64-bit difference hash that may differ on a new version; null: the look is not "
        "compared (count, kind, format and size still are)"))


MAX_WAIT = 3600


class TemplateExecutionCreate(Shape):
    MESSAGES: ClassVar[dict[str, str]] = {
        "client_id": "client_id must be a websocket client id (a string of 1 to 200 characters)",
        "wait": f"wait must be a number of seconds from 0 to {MAX_WAIT}"}
    inputs: Any = doc(INPUTS, None)
    client_id: str | None = Field(None, min_length=1, max_length=200, description=CLIENT_ID_DOC)
    webhook_url: Any = doc(WEBHOOK_URL, None)
    wait: float = Field(0, ge=0, le=MAX_WAIT,
                        description="seconds to wait for the execution to end (200 with outputs) before answering 202")


class TemplatePrompt(Shape):
    inputs: Any = doc(INPUTS, None)


class Analyze(Shape):
    model_config = ConfigDict(extra="ignore", strict=True)
    MESSAGES: ClassVar[dict[str, str]] = {"workflow": "missing field: workflow (ComfyUI's UI or API format)"}
    workflow: Any = doc({"type": "object", "description": "UI or API format"})


class EnvironmentPublish(Shape):
    name: Any = doc(NAME)
    templates: Any = doc({**STRINGS, "description": "the templates it serves (default: those bound to it)"}, None)
    include: Any = doc({"enum": ["templates", "all"], "description": "what the templates need, or every custom "
                                                                      "node pack and model here"}, "templates")
    endpoint: Any = doc(_endpoint_config(), None)
    bind: Any = doc({"type": "boolean", "description": "bind the templates it includes to it once published"}, False)
    warmup: Any = doc({"anyOf": [{"type": "object"}, {"type": "string"}, {"type": "boolean"}, {"type": "null"}],
                       "description": "what each worker runs on each of its ComfyUIs before it reports ready, so "
                                      "models are loaded before the first prompt: a prompt (API format), a "
                                      "template's name (its prompt with its parameters' defaults), true (the "
                                      "first template's), or false/null for none"}, None)


class EnvironmentRollback(Shape):
    """The body of a rollback (optional: `?to=` says the same; an empty body takes the default)."""

    MESSAGES: ClassVar[dict[str, str]] = {"to": "to must be a version number (a whole number from 1)"}
    to: int | None = Field(None, ge=1, le=999_999, description="the version to serve again (default: the one "
                                                               "before the version the endpoint serves)")


class EnvironmentVersions(TypedDict):
    """An environment's history: its versions newest first (who published each, when, what changed against the
    one before: packs, models, templates), and the version its endpoint serves (null without an endpoint)."""

    name: str
    serving: int | None
    versions: list[dict[str, Any]]


class EndpointCreate(Shape):
    MESSAGE: ClassVar[str | None] = "send {environment: <name>}: the endpoint runs that environment's latest version"
    MESSAGES: ClassVar[dict[str, str]] = {"environment": "environment must be an environment name",
                                          "shared": "shared must be true or false"}
    environment: str
    shared: bool | None = Field(None, description=(
        "a local endpoint: true shares it with the team (every ComfyUI on the store runs on it), false makes it this "
        "ComfyUI's own again; absent: as its environment's endpoint config says (the Endpoints section's Share)"))


class ExecutionCreate(Shape):
    MESSAGES: ClassVar[dict[str, str]] = {"prompt": "prompt must be a non-empty object (ComfyUI's API format)"}
    prompt: Any = doc(PROMPT)
    workflow: Any = doc(GRAPH, None)
    client_id: Any = doc({"type": "string", "minLength": 1, "maxLength": 200, "description": CLIENT_ID_DOC}, None)
    template: Any = doc({**NAME_OR_NULL, "description": "runs on its environment's endpoint"}, None)
    template_version: Any = doc({"type": ["integer", "null"], "description": "the version of the template loaded"},
                                None)
    environment: Any = doc({**NAME_OR_NULL, "description": "or name the environment (the one the loaded template "
                                                           "was bound to)"}, None)


class Watcher(Shape):
    MESSAGE: ClassVar[str | None] = "send {enabled: true | false}"
    enabled: bool


class ConfigChange(Shape):
    """POST /connect/check and PUT /config: the changes (core/config.py validates them) and `replace`."""

    MESSAGES: ClassVar[dict[str, str]] = {"replace": "replace must be true or false"}
    changes: Any = doc(_config_changes(), None)
    replace: bool = Field(False, description="start from nothing but the store folder and the token (a broken file)")


class Doctor(Shape):
    """POST /connect/doctor: the instance type whose quota and region offer are checked (aws/doctor.py)."""

    MESSAGES: ClassVar[dict[str, str]] = {"instance_type": "instance_type must be a SageMaker instance type such as "
                                                           "ml.g5.xlarge"}
    instance_type: str | None = Field(None, pattern=f"^{endpoint_config.INSTANCE_TYPE_RE.pattern}$",
                                      description="default: an endpoint's of this store, else ml.g5.xlarge")


class Subscribe(Shape):
    MESSAGES: ClassVar[dict[str, str]] = {"client_id": "client_id must be the page's ComfyUI client id"}
    client_id: str = Field(min_length=1, max_length=200, description="the page's ComfyUI websocket client id")


class ModelDownload(Shape):
    folder: Any = doc({"type": "string"})
    name: Any = doc({"type": "string", "description": "required (a missing one is invalid_name, as a bad one)"}, None)
    url: Any = doc({"type": "string", "format": "uri", "description": "https, from an allowed host"})
    sha256: Any = doc({"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}, None)
    overwrite: Any = doc({"type": "boolean", "description": "replace a model of that name (else 409 model_exists)"},
                         False)


class AssetFromHash(Shape):
    MESSAGE: ClassVar[str | None] = "send {hash, file_path?, tags?, content_type?}"
    hash: Any = doc(BLAKE3)
    file_path: Any = doc({"type": "string"}, None)
    content_type: Any = doc({"type": "string"}, None)
    tags: Any = doc(STRINGS, None)


class AssetUpload(Shape):
    """POST /assets's multipart form (read part by part in server_routes/v2.py: this model documents it and
    names its text fields)."""

    file: Any = doc({"type": "string", "format": "binary"})
    file_path: Any = doc({"type": "string"})
    content_type: Any = doc({"type": "string"}, None)
    expected_hash: Any = doc(BLAKE3, None)
    tags: Any = doc(STRINGS, None)


# queries

class ExecutionsQuery(Query):
    MESSAGES: ClassVar[dict[str, str]] = {
        "owner": "owner must be me, all, or an owner key from a record",
        "after": "after must be the `next` of a previous page",
        "state": f"state must be one of {', '.join(STATES)}"}
    state: Literal[STATES] | None = Field(None, description="only these")  # type: ignore[valid-type]
    template: str | None = Field(None, description="only this template's")
    owner: str = Field("me", pattern=f"^(me|all|{OWNER_KEY})$", description="me, all, or an owner key")
    after: str | None = Field(None, pattern=f"^{CURSOR}$", description="the `next` of the previous page")
    limit: WholeNumber = Field(10, ge=1, le=500, description="newest first")


class EnvironmentQuery(Query):
    # the bounds inside: pydantic cannot put them on a number that may be None once a validator wraps it
    version: Annotated[int, Field(ge=1, le=999_999), BeforeValidator(_digits)] | None = Field(
        None, description="default: the latest")


class EnvironmentRollbackQuery(Query):
    to: Annotated[int, Field(ge=1, le=999_999), BeforeValidator(_digits)] | None = Field(
        None, description="the version to serve again (default: the one before the version the endpoint serves)")


class EnvironmentDeleteQuery(Query):
    force: Flag = Field(False, description="also while bound or running (1, true or yes)")


class PricesQuery(Query):
    MESSAGES: ClassVar[dict[str, str]] = {
        "instance_type": "instance_type must be a SageMaker instance type such as ml.g5.xlarge",
        "region": "region must be an AWS region such as us-east-1",
        "min": "min must be a whole number from 0 to 100", "max": "max must be a whole number from 1 to 100"}
    instance_type: str = Field(endpoint_config.DEFAULT_INSTANCE_TYPE,
                               pattern=f"^{endpoint_config.INSTANCE_TYPE_RE.pattern}$")
    region: Annotated[str | None, BeforeValidator(_empty_none)] = Field(
        None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$", description="default: the configuration's region")
    min: WholeNumber = Field(0, ge=0, le=100, description="instances kept when idle (0: scales to zero)")
    max: WholeNumber = Field(1, ge=1, le=100, description="instances at most")


class LogsQuery(Query):
    MESSAGES: ClassVar[dict[str, str]] = {"contains": "contains: at most 200 characters"}
    tail: WholeNumber = Field(200, ge=0, le=5000, description="last lines")
    contains: Annotated[str | None, BeforeValidator(_empty_none)] = Field(
        None, max_length=200, description="only lines holding this text (any case)")


class ModelUploadQuery(Query):
    MESSAGES: ClassVar[dict[str, str]] = {"sha256": "sha256 must be 64 hexadecimal digits"}
    sha256: Annotated[str | None, BeforeValidator(_empty_none)] = Field(
        None, pattern="^[0-9a-fA-F]{64}$", description="refused (nothing kept) if it differs")
    overwrite: StrictFlag = Field(False, description="replace an existing file (only `true`)")


class CostsQuery(Query):
    fresh: Flag = Field(False, description="computed now, not the answer kept for a minute (1, true or yes)")


class V2JobsQuery(Query):
    MESSAGES: ClassVar[dict[str, str]] = {"cursor": "cursor must be the next_cursor of a previous page"}
    limit: WholeNumber = Field(50, ge=1, le=100)
    cursor: str | None = Field(None, pattern=f"^{CURSOR}$", description="the next_cursor of the previous page")
    status: str | None = Field(None, description="only jobs in this status: queued, running, succeeded, canceling, "
                               "canceled, failed or expired (this project's extension; another value is a 400 "
                               "invalid_status_filter)")


# responses (TypedDicts: a handler builds its answer as one, at no cost; the document shows its schema)

class ErrorDetail(TypedDict):
    code: str  # stable snake_case code, e.g. not_found, invalid_inputs
    message: str
    fields: NotRequired[dict[str, str]]  # invalid_inputs only: parameter name -> reason
    details: NotRequired[dict[str, Any]]


class Error(TypedDict):
    """Every error answer of the extension's routes (server_routes/errors.py builds it)."""

    error: ErrorDetail


class Unreadable(TypedDict):
    key: str
    reason: str


class ExecutionAnswer(ExecutionRecord):
    """GET /executions/{id}: the record as stored (its client_id left out) and whether it is the asker's."""

    mine: bool


class ExecutionCreated(TypedDict):
    """POST /executions (202): the run queued."""

    execution_id: str
    prompt_id: str
    execution: ExecutionRecord


class ExecutionsPage(TypedDict):
    executions: list[ExecutionSummary]
    next: str | None
    skipped: list[Unreadable]


class TemplatesList(TypedDict):
    templates: list[dict[str, Any]]
    skipped: list[Unreadable]


class EnvironmentsList(TypedDict):
    environments: list[dict[str, Any]]
    skipped: list[Unreadable]


class ProviderProblem(TypedDict):
    kind: str
    reason: str


class EndpointsList(TypedDict):
    endpoints: list[EndpointView]
    unavailable: list[ProviderProblem]


# validating

M = TypeVar("M", bound=Shape)


def parse(model: type[M], data: dict) -> M:
    """`data` as a `model`; BadRequest (400 bad_request) in the route's words otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise BadRequest(message(model, err)) from None


def message(model: type[Shape], err: ValidationError) -> str:
    problems = err.errors()
    unknown = sorted(str(p["loc"][0]) for p in problems if p["type"] == "extra_forbidden")
    if unknown:
        allowed = ", ".join(sorted(model.model_fields))
        return model.MESSAGE or f"unknown fields: {', '.join(unknown)} (allowed: {allowed})"
    first = problems[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    if first["type"] == "missing":
        return model.MESSAGE or model.MESSAGES.get(field) or f"missing field: {field}"
    if field in model.MESSAGES or model.MESSAGE:
        return model.MESSAGES.get(field) or model.MESSAGE or ""
    schema = _schema(model)["properties"].get(field, {})
    number = schema.get("type") or next(
        (s.get("type") for s in schema.get("anyOf", ()) if s.get("type") != "null"), None)
    low, high = _bound(schema, "minimum"), _bound(schema, "maximum")
    if number in ("integer", "number") and low is not None and high is not None:
        kind = "a whole number" if number == "integer" else "a number"
        return f"{field} must be {kind} from {low} to {high}"
    return describe(err)


def _bound(schema: dict, key: str) -> object:
    return schema.get(key, next((s[key] for s in schema.get("anyOf", ()) if key in s), None))


_schemas: dict[type, dict] = {}


def _schema(model: type[Shape]) -> dict:
    if model not in _schemas:
        _schemas[model] = model.model_json_schema()
    return _schemas[model]
