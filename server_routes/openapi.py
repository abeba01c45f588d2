"""GET /sagemaker/openapi.json: an OpenAPI 3.1 document made from the route tables themselves,
so a new route shows up without editing this file (it gets a summary once one is written here)."""

from __future__ import annotations

import re

from aiohttp import web

from ..core.version import __version__
from .context import Context
from .http import json_ok

SUMMARIES = {
    ("GET", "/health"): "Extension, ComfyUI and store status",
    ("GET", "/rules"): "Name rules (the single source for the UI's validation)",
    ("POST", "/names/check"): "Check a template or environment name",
    ("GET", "/templates"): "List templates",
    ("POST", "/templates"): "Publish a template (its parameter nodes give its parameter schema)",
    ("GET", "/templates/{name}"): "A template: workflow, prompt, environment, version, parameters",
    ("PUT", "/templates/{name}"): "Rebind a template or replace its workflow and prompt",
    ("DELETE", "/templates/{name}"): "Delete a template",
    ("POST", "/templates/{name}/executions"): "Run a template with parameter values {inputs, wait?}",
    ("GET", "/snapshot"): "This ComfyUI: versions, custom node packs, Python packages, models",
    ("POST", "/analyze"): "Analyse a workflow: node types, packs, models, inputs, missing nodes",
    ("GET", "/environments"): "List environments",
    ("POST", "/environments"): "Publish an environment (and deploy it with an endpoint config)",
    ("GET", "/environments/{name}"): "An environment's manifest (?version=n)",
    ("DELETE", "/environments/{name}"): "Delete an environment (?force=true while bound or running)",
    ("GET", "/environments/{name}/diff"): "This ComfyUI against an environment",
    ("GET", "/jobs/{id}"): "A background job's progress",
    ("POST", "/jobs/{id}/cancel"): "Cancel a background job",
    ("GET", "/endpoints"): "List endpoints (local and SageMaker)",
    ("POST", "/endpoints"): "Deploy an environment's endpoint",
    ("GET", "/endpoints/{name}"): "An endpoint's state",
    ("GET", "/endpoints/{name}/logs"): "An endpoint's worker log",
    ("DELETE", "/endpoints/{name}"): "Remove an endpoint and everything made for it",
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
RUN_BODY = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "inputs": {"type": "object", "description": "parameter name -> value, as the template's `parameters` "
                                                    "schema says; images as an input-folder file name or base64"},
        "wait": {"type": "number", "minimum": 0, "maximum": 3600,
                 "description": "seconds to wait for the run to end (200 with outputs) before answering 202"},
    },
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
                               for p in re.findall(r"\{(\w+)\}", clean)],
                "responses": {
                    "2XX": {"description": "JSON (204 has no body)"},
                    "default": {"description": "an error", "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                },
            }
            if method in ("POST", "PUT"):
                schema = RUN_BODY if key == ("POST", "/templates/{name}/executions") else {"type": "object"}
                op["requestBody"] = {"content": {"application/json": {"schema": schema}}}
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


async def get_openapi(request: web.Request, ctx: Context) -> web.Response:
    from . import ROUTE_TABLES  # the package imports this module

    return json_ok(document(ROUTE_TABLES))


ROUTES = [("GET", "/openapi.json", get_openapi)]
