"""GET /sagemaker/openapi.json: an OpenAPI 3.1 document made from the route tables themselves,
so a new route shows up without editing this file (it gets a summary once one is written here)."""

from __future__ import annotations

import re

from aiohttp import web

from ..core import config as config_mod
from ..core.config import Config
from ..core.version import __version__
from . import deprecation
from .context import RouteContext
from .http import json_ok

V2 = "/v2/{environment}/api/v2"  # the Comfy API v2, mounted per environment

SUMMARIES = {
    ("GET", "/health"): "Extension, ComfyUI and store status",
    ("GET", "/rules"): "Name rules (the single source for the UI's validation)",
    ("POST", "/names/check"): "Check a template or environment name",
    ("GET", "/templates"): "List templates",
    ("POST", "/templates"): "Publish a template (its parameter nodes give its parameter schema)",
    ("GET", "/templates/{name}"): "A template: workflow, prompt, environment, version, parameters",
    ("PUT", "/templates/{name}"): "Rebind a template or replace its workflow and prompt",
    ("DELETE", "/templates/{name}"): "Delete a template",
    ("POST", "/templates/{name}/executions"): "Run a template on its endpoint with parameter values",
    ("POST", "/templates/{name}/prompt"): "A template's prompt with parameter values filled in, for POST /prompt",
    ("GET", "/snapshot"): "This ComfyUI: versions, custom node packs, Python packages, models",
    ("POST", "/analyze"): "Analyse a workflow: node types, packs, models, inputs, missing nodes",
    ("GET", "/environments"): "List environments",
    ("POST", "/environments"): "Publish an environment (and deploy it with an endpoint config)",
    ("GET", "/environments/{name}"): "An environment's manifest (?version=n)",
    ("DELETE", "/environments/{name}"): "Delete an environment (?force=true while bound or running)",
    ("GET", "/environments/{name}/diff"): "This ComfyUI against an environment",
    ("GET", "/tasks/{id}"): "A background task's progress (a publish, a model download)",
    ("POST", "/tasks/{id}/cancel"): "Cancel a background task",
    ("GET", "/jobs/{id}"): "Deprecated: GET /tasks/{id}",
    ("POST", "/jobs/{id}/cancel"): "Deprecated: POST /tasks/{id}/cancel",
    ("GET", "/endpoints"): "List endpoints (local and SageMaker)",
    ("POST", "/endpoints"): "Deploy an environment's endpoint",
    ("GET", "/endpoints/{name}"): "An endpoint's state",
    ("GET", "/endpoints/{name}/logs"): "An endpoint's worker log",
    ("DELETE", "/endpoints/{name}"): "Remove an endpoint and everything made for it",
    ("POST", "/endpoints/{name}/stop"): "Stop an endpoint, keeping what it runs (state Stopped: billing stops)",
    ("POST", "/endpoints/{name}/start"): "Start a stopped endpoint again (state Creating, then InService)",
    ("GET", "/executions"): "Recent executions (?state=&template=&limit=)",
    ("POST", "/executions"): "Run a prompt on an endpoint (Prompt on AWS)",
    ("GET", "/executions/{id}"): "An execution: state, timings, outputs, error",
    ("POST", "/executions/{id}/cancel"): "Cancel an execution",
    ("GET", "/inputs"): "Input sync state per file",
    ("POST", "/inputs/watcher"): "Turn the input watcher on or off",
    ("POST", "/inputs/scan"): "Rescan the input folder",
    ("GET", "/models"): "Model files per folder with hash state",
    ("PUT", "/models/{folder}/{name}"): "Upload a model file (raw body, ?sha256=, ?overwrite=true)",
    ("POST", "/models/download"): "Download a model by URL",
    ("DELETE", "/models/{folder}/{name}"): "Delete a model file",
    ("GET", "/openapi.json"): "This document",
    ("GET", "/connect"): "The effective configuration (never a credential) and the file's state",
    ("POST", "/connect/check"): "Check each AWS prerequisite of a configuration (nothing written)",
    ("PUT", "/config"): "Change the configuration and apply it without restarting ComfyUI (designer)",
    ("POST", "/config/reload"): "Apply config.json as it is now (the file is the authority, also for an artist)",
    ("POST", "/events/subscribe"): "Receive the extension's events on this page's websocket (with the token)",
    # the Comfy API v2 of one environment (server_routes/v2.py)
    ("POST", V2 + "/jobs"): "Comfy API v2: submit a job (an API-format graph, or a template with inputs)",
    ("GET", V2 + "/jobs"): "Comfy API v2: a page of jobs, newest first",
    ("GET", V2 + "/jobs/{id}"): "Comfy API v2: a job (status, progress, outputs, error)",
    ("GET", V2 + "/jobs/{id}/events"): "Comfy API v2: a job's live events (server-sent events)",
    ("POST", V2 + "/jobs/{id}/cancel"): "Comfy API v2: cancel a job (idempotent)",
    ("POST", V2 + "/assets"): "Comfy API v2: upload an asset (multipart, expected_hash checked)",
    ("HEAD", V2 + "/assets/by-hash/{hash}"): "Comfy API v2: is a blob with this blake3 hash here",
    ("POST", V2 + "/assets/from-hash"): "Comfy API v2: an asset over bytes already here",
    ("GET", V2 + "/assets/{id}"): "Comfy API v2: an asset's metadata",
    ("GET", V2 + "/assets/{id}/content"): "Comfy API v2: an asset's bytes (Range requests served)",
}

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "description": "stable snake_case code, e.g. not_found, invalid_inputs"},
            "message": {"type": "string"},
            "fields": {"type": "object", "additionalProperties": {"type": "string"},
                       "description": "invalid_inputs only: parameter name -> reason"},
        },
    }},
}
def obj(properties: dict, required: tuple[str, ...] = (), closed: bool = True) -> dict:
    schema: dict = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    return schema


NAME = {"type": "string", "pattern": "^[A-Za-z0-9]{1,20}$", "description": "letters and digits, case-sensitive"}
GRAPH = {"type": "object", "description": "ComfyUI's UI-format graph (what Save writes)"}
PROMPT = {"type": "object", "description": "ComfyUI's API-format prompt: node id -> {class_type, inputs}"}
INPUTS = {"type": "object", "description": "parameter name -> value, as the template's `parameters` schema says; "
                                           "images as an input-folder file name or base64"}
WEBHOOK_URL = {"type": "string", "format": "uri",
               "description": "gets a signed POST of the run when it ends (docs/http-api.md: Webhooks)"}
CLIENT_ID = {"type": "string", "minLength": 1, "maxLength": 200,
             "description": "ComfyUI's websocket client id: that browser gets the run's ComfyUI events"}
ENDPOINT_CONFIG = {"oneOf": [
    obj({"kind": {"const": "local"}}, ("kind",)),
    obj({
        "kind": {"const": "sagemaker"},
        "instance_type": {"type": "string", "pattern": r"^ml\.[a-z0-9]+\.[a-z0-9]+$", "default": "ml.g5.xlarge"},
        "initial_count": {"type": "integer", "minimum": 1, "default": 1},
        "mode": {"enum": ["async", "realtime"], "default": "async"},
        "autoscaling": {"oneOf": [{"type": "null"}, obj({"min": {"type": "integer", "minimum": 0},
                                                         "max": {"type": "integer", "minimum": 1}},
                                                        ("min", "max"))]},
    }, ("kind",)),
], "description": "no endpoint config: publish only; instance counts are capped by the max_instances setting"}

# Request bodies by (method, path). A POST or PUT not listed takes no body.
def _config_changes() -> dict:
    """The keys the page may set, from the configuration's own schema (core/config.py): null removes one."""
    props = Config.model_json_schema()["properties"]
    return {"type": "object", "additionalProperties": False,
            "description": "configuration keys to set (null removes one; token is write-only); store_path is not "
                           "among them",
            "properties": {k: {"anyOf": [props[k], {"type": "null"}]} for k in config_mod.EDITABLE}}


CONFIG_CHANGE = {
    "changes": _config_changes(),
    "replace": {"type": "boolean", "description": "start from nothing but the store folder and the token (a broken "
                                                  "file)"},
}
BODIES: dict[tuple[str, str], tuple[str, dict]] = {
    ("POST", "/names/check"): ("application/json", obj(
        {"kind": {"enum": ["template", "environment"]}, "name": {"type": "string"}}, ("kind", "name"))),
    ("POST", "/templates"): ("application/json", obj(
        {"name": NAME, "workflow": GRAPH, "prompt": PROMPT,
         "environment": {"type": ["string", "null"], "description": "the environment it runs on"}},
        ("name", "workflow", "prompt"))),
    ("PUT", "/templates/{name}"): ("application/json", obj(
        {"environment": {"type": ["string", "null"]}, "workflow": GRAPH, "prompt": PROMPT,
         "version": {"type": "integer", "description": "the version you edited: 409 if it has moved on"}})),
    ("POST", "/templates/{name}/executions"): ("application/json", obj(
        {"inputs": INPUTS, "client_id": CLIENT_ID, "webhook_url": WEBHOOK_URL,
         "wait": {"type": "number", "minimum": 0, "maximum": 3600,
                  "description": "seconds to wait for the run to end (200 with outputs) before answering 202"}})),
    ("POST", "/templates/{name}/prompt"): ("application/json", obj({"inputs": INPUTS})),
    ("POST", "/analyze"): ("application/json", obj({"workflow": {"type": "object", "description": "UI or API format"}},
                                                   ("workflow",))),
    ("POST", "/environments"): ("application/json", obj(
        {"name": NAME,
         "templates": {"type": "array", "items": {"type": "string"},
                       "description": "the templates it serves (default: those bound to it)"},
         "include": {"enum": ["templates", "all"], "default": "templates",
                     "description": "what the templates need, or every custom node pack and model here"},
         "endpoint": ENDPOINT_CONFIG,
         "bind": {"type": "boolean", "default": False,
                  "description": "bind the templates it includes to it once published"}}, ("name",))),
    ("POST", "/endpoints"): ("application/json", obj({"environment": {"type": "string"}}, ("environment",))),
    ("POST", "/executions"): ("application/json", obj(
        {"prompt": PROMPT, "workflow": GRAPH, "client_id": CLIENT_ID,
         "template": {"type": ["string", "null"], "description": "runs on its environment's endpoint"},
         "template_version": {"type": ["integer", "null"], "description": "the version of the template loaded"},
         "environment": {"type": ["string", "null"], "description": "or name the environment (the one the "
                                                                   "loaded template was bound to)"}}, ("prompt",))),
    ("POST", "/inputs/watcher"): ("application/json", obj({"enabled": {"type": "boolean"}}, ("enabled",))),
    ("POST", "/connect/check"): ("application/json", obj(CONFIG_CHANGE)),
    ("PUT", "/config"): ("application/json", obj(CONFIG_CHANGE, ("changes",))),
    ("POST", "/events/subscribe"): ("application/json", obj(
        {"client_id": {"type": "string", "description": "the page's ComfyUI websocket client id"}}, ("client_id",))),
    ("POST", "/models/download"): ("application/json", obj(
        {"folder": {"type": "string"}, "name": {"type": "string"},
         "url": {"type": "string", "format": "uri", "description": "https, from an allowed host"},
         "sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
         "overwrite": {"type": "boolean", "description": "replace a model of that name (else 409 model_exists)"}},
        ("folder", "name", "url"))),
    ("PUT", "/models/{folder}/{name}"): ("application/octet-stream", {"type": "string", "format": "binary",
                                                                      "description": "the file's bytes"}),
    ("POST", V2 + "/jobs"): ("application/json", obj({
        "workflow": {"type": "object", "description": "API-format graph; core/ASSET references where files go"},
        "template": {"type": "string", "description": "or: run this template (this project's extension)"},
        "inputs": INPUTS, "webhook_url": WEBHOOK_URL,
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}, "description": "string labels"},
        "extra_data": {"type": "object", "description": "accepted, not used (no partner nodes on these endpoints)"},
    })),
    ("POST", V2 + "/assets"): ("multipart/form-data", obj({
        "file": {"type": "string", "format": "binary"}, "content_type": {"type": "string"},
        "file_path": {"type": "string"}, "expected_hash": {"type": "string", "pattern": "^blake3:[0-9a-f]{64}$"},
        "tags": {"type": "array", "items": {"type": "string"}}}, ("file", "file_path"))),
    ("POST", V2 + "/assets/from-hash"): ("application/json", obj({
        "hash": {"type": "string", "pattern": "^blake3:[0-9a-f]{64}$"}, "file_path": {"type": "string"},
        "content_type": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}}, ("hash",))),
}


def query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


QUERIES: dict[tuple[str, str], list[dict]] = {
    ("GET", "/environments/{name}"): [query("version", {"type": "integer", "minimum": 1}, "default: the latest")],
    ("DELETE", "/environments/{name}"): [query("force", {"type": "boolean"}, "also while bound or running")],
    ("GET", "/endpoints/{name}/logs"): [query("tail", {"type": "integer", "minimum": 0, "maximum": 5000},
                                              "last lines (default 200)"),
                                        query("contains", {"type": "string", "maxLength": 200},
                                              "only lines holding this text (any case)")],
    ("GET", "/executions"): [
        query("state", {"enum": ["queued", "running", "succeeded", "failed", "cancelled"]}, "only these"),
        query("template", {"type": "string"}, "only this template's"),
        query("owner", {"type": "string"}, "me (default), all, or an owner key"),
        query("after", {"type": "string"}, "the `next` of the previous page"),
        query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "default 50, newest first"),
    ],
    ("GET", V2 + "/jobs"): [query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "default 50"),
                            query("cursor", {"type": "string"}, "the next_cursor of the previous page")],
    ("PUT", "/models/{folder}/{name}"): [
        query("sha256", {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}, "refused (nothing kept) if it differs"),
        query("overwrite", {"type": "boolean"}, "replace an existing file"),
    ],
}


def openapi_path(path: str) -> str:
    return "/sagemaker" + re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)


def document(tables: list[list[tuple]]) -> dict:
    paths: dict[str, dict] = {}
    for table in tables:
        for method, path, fn in table:
            clean = openapi_path(path)
            key = (method, clean[len("/sagemaker"):])
            doc = (fn.__doc__ or "").strip().splitlines()
            op: dict = {
                "operationId": fn.__name__,
                "summary": SUMMARIES.get(key) or (doc[0] if doc else fn.__name__.replace("_", " ")),
                "parameters": [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                               for p in re.findall(r"\{(\w+)\}", clean)] + QUERIES.get(key, []),
                "responses": {
                    "2XX": {"description": "JSON (204 has no body)"},
                    "default": {"description": "an error", "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                },
            }
            if key[1] in deprecation.SUCCESSORS:  # the successor's handler: its operationId is taken
                op.update(deprecated=True, operationId=fn.__name__ + "_deprecated")
            if key in BODIES:
                media, schema = BODIES[key]
                op["requestBody"] = {"required": True, "content": {media: {"schema": schema}}}
            paths.setdefault(clean, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "comfyui-sagemaker", "version": __version__,
                 "description": "Routes are also served under ComfyUI's /api/ alias. Mutating routes need a "
                                "matching Origin and, when configured, the token."},
        "paths": paths,
        "components": {"schemas": {"Error": ERROR}, "securitySchemes": {
            "token": {"type": "apiKey", "in": "header", "name": "X-SageMaker-Token",
                      "description": "needed by mutating routes when a token is configured or ComfyUI listens "
                                     "off loopback"}}},
    }


async def get_openapi(request: web.Request, ctx: RouteContext) -> web.Response:
    from . import ROUTE_TABLES  # the package imports this module

    return json_ok(document(ROUTE_TABLES))


ROUTES = [("GET", "/openapi.json", get_openapi)]
