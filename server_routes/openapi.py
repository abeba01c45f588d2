"""GET /sagemaker/openapi.json: an OpenAPI 3.1 document made from the route tables themselves, so a new route
shows up without editing this file (it gets a summary once one is written here). Each route's query, body and
answer are the JSON schema of the models its handler declares with @shapes (server_routes/schemas.py): the
very models it validates with."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from ..core.shapes import adapter
from ..core.version import __version__
from . import deprecation
from .context import RouteContext
from .http import Declared, declared, json_ok
from .schemas import Error

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
    ("POST", "/templates/{name}/proof"): "Use a succeeded run of the template as its proof (designer)",
    ("DELETE", "/templates/{name}/proof"): "Drop the template's proof (designer)",
    ("POST", "/templates/{name}/executions"): "Run a template on its endpoint with parameter values",
    ("POST", "/templates/{name}/prompt"): "A template's prompt with parameter values filled in, for POST /prompt",
    ("GET", "/snapshot"): "This ComfyUI: versions, custom node packs, Python packages, models",
    ("POST", "/analyze"): "Analyse a workflow: node types, packs, models, inputs, missing nodes",
    ("GET", "/environments"): "List environments",
    ("POST", "/environments"): "Publish an environment (and deploy it with an endpoint config)",
    ("GET", "/environments/{name}"): "An environment's manifest (?version=n)",
    ("DELETE", "/environments/{name}"): "Delete an environment (?force=true while bound or running)",
    ("GET", "/environments/{name}/diff"): "This ComfyUI against an environment",
    ("POST", "/environments/{name}/rollback"): "Serve an older version again (?to=n or {to}; default the one "
                                               "before the serving version): kept resources reused, no upload",
    ("GET", "/environments/{name}/versions"): "An environment's history: who published each version, when, what "
                                              "changed, which serves now",
    ("GET", "/tasks/{id}"): "A background task's progress (a publish, a model download)",
    ("POST", "/tasks/{id}/cancel"): "Cancel a background task",
    ("GET", "/jobs/{id}"): "Deprecated: GET /tasks/{id}",
    ("POST", "/jobs/{id}/cancel"): "Deprecated: POST /tasks/{id}/cancel",
    ("GET", "/endpoints"): "List endpoints (local and SageMaker)",
    ("GET", "/prices"): "What an endpoint would cost, hourly and monthly at min and max instances (dated table)",
    ("POST", "/endpoints"): "Deploy an environment's endpoint",
    ("GET", "/endpoints/{name}"): "An endpoint's state",
    ("GET", "/endpoints/{name}/logs"): "An endpoint's worker log",
    ("DELETE", "/endpoints/{name}"): "Remove an endpoint and everything made for it",
    ("POST", "/endpoints/{name}/stop"): "Stop an endpoint, keeping what it runs (state Stopped: billing stops)",
    ("POST", "/endpoints/{name}/start"): "Start a stopped endpoint again (state Creating, then InService)",
    ("GET", "/costs"): "What runs and what it costs: endpoints, storage, the last 30 days (?fresh=1)",
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
    ("POST", "/connect/doctor"): "aws doctor: check the AWS account as the extension uses it (designer)",
    ("PUT", "/config"): "Change the configuration and apply it without restarting ComfyUI (designer)",
    ("POST", "/config/reload"): "Apply config.json as it is now (the file is the authority, also for an artist)",
    ("POST", "/events/subscribe"): "Receive the extension's events on this page's websocket (with the token); "
                                   "a visible page renews it every minute: the store is watched while one does",
    # the Comfy API v2 of one environment (server_routes/v2.py)
    ("POST", V2 + "/jobs"): "Comfy API v2: submit a job (an API-format graph, or a template with inputs)",
    ("GET", V2 + "/jobs"): "Comfy API v2: a page of jobs, newest first",
    ("GET", V2 + "/jobs/{id}"): "Comfy API v2: a job (status, progress, outputs, error)",
    ("GET", V2 + "/jobs/{id}/workflow"): "Comfy API v2: the graph a job ran ({format: api, workflow})",
    ("GET", V2 + "/jobs/{id}/events"): "Comfy API v2: a job's live events (server-sent events)",
    ("POST", V2 + "/jobs/{id}/cancel"): "Comfy API v2: cancel a job (idempotent)",
    ("POST", V2 + "/assets"): "Comfy API v2: upload an asset (multipart, expected_hash checked)",
    ("HEAD", V2 + "/assets/by-hash/{hash}"): "Comfy API v2: is a blob with this blake3 hash here",
    ("POST", V2 + "/assets/from-hash"): "Comfy API v2: an asset over bytes already here",
    ("GET", V2 + "/assets/{id}"): "Comfy API v2: an asset's metadata",
    ("DELETE", V2 + "/assets/{id}"): "Comfy API v2: delete an uploaded asset's record (204; 409 asset_in_use "
                                     "while a job in flight reads it, or for an output)",
    ("GET", V2 + "/assets/{id}/content"): "Comfy API v2: an asset's bytes (Range requests served)",
}

# Where the Comfy API v2 routes say more than the protocol (comfy-sdk's spec/openapi.yaml): said on each
# operation (`x-comfyui-sagemaker-extension`), so a client written against the protocol knows what it may ignore.
V2_EXTENSIONS = {
    ("POST", V2 + "/jobs"): "body: template with inputs (run a template by its parameters), webhook_url (a signed "
                            "POST when the job ends); answer: template, environment, webhook",
    ("GET", V2 + "/jobs"): "query: status; answer: skipped (records the store holds but cannot read); items: "
                           "template, environment",
    ("GET", V2 + "/jobs/{id}"): "answer: template, environment, webhook",
    ("POST", V2 + "/jobs/{id}/cancel"): "answer: template, environment, webhook",
}


def openapi_path(path: str) -> str:
    return "/sagemaker" + re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)


REF = "#/components/schemas/{model}"


class Schemas:
    """The components' schemas: each model's JSON schema, its nested definitions hoisted beside it (a `$ref`
    in an OpenAPI document is resolved from the document's root)."""

    def __init__(self) -> None:
        self.components: dict[str, dict] = {}

    def of(self, shape: Any) -> dict:
        if isinstance(shape, type) and issubclass(shape, BaseModel):
            schema = shape.model_json_schema(ref_template=REF)
        else:  # a TypedDict or a dataclass (an answer)
            schema = adapter(shape).json_schema(ref_template=REF)
        self.components.update(schema.pop("$defs", {}))
        for prop in schema.get("properties", {}).values():
            if prop.get("default", ...) is None:
                del prop["default"]  # a field left out; a schema that takes no null must not name null its default
        return schema

    def named(self, shape: Any, inline: bool = False) -> dict:
        """A `$ref` to the shape's schema among the components (`inline`: with its fields' shapes in it, for a
        reader who looks at one schema only, such as the error envelope)."""
        name = shape.__name__
        if name not in self.components:
            schema = self.of(shape)
            if inline:
                schema["properties"] = {k: self.resolved(v) for k, v in schema["properties"].items()}
            self.components[name] = schema
        return {"$ref": REF.format(model=name)}

    def resolved(self, schema: dict) -> dict:
        ref = schema.get("$ref")
        return self.components[ref.rsplit("/", 1)[1]] if ref else schema


def query_parameters(shape: Declared, schemas: Schemas) -> list[dict]:
    schema = schemas.of(shape.query)
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema["properties"].items():
        prop = {k: v for k, v in prop.items() if k not in ("title", "description")}
        # Optional[X]: a query parameter is left out, never null
        choices = [c for c in prop.pop("anyOf", ()) if c.get("type") != "null"]
        if choices:
            prop = {**prop, **choices[0]} if len(choices) == 1 else {**prop, "anyOf": choices}
        out.append({"name": name, "in": "query", "required": name in required, "schema": prop,
                    **({"description": schema["properties"][name]["description"]}
                       if "description" in schema["properties"][name] else {})})
    return out


def request_body(shape: Declared, schemas: Schemas) -> dict:
    if shape.body is None:  # raw bytes
        schema: dict = {"type": "string", "format": "binary", "description": "the file's bytes"}
    else:
        schema = schemas.named(shape.body)
    return {"required": shape.required, "content": {shape.media: {"schema": schema}}}


def document(tables: list[list[tuple]]) -> dict:
    paths: dict[str, dict] = {}
    schemas = Schemas()
    error = schemas.named(Error, inline=True)
    for table in tables:
        for method, path, fn in table:
            clean = openapi_path(path)
            key = (method, clean[len("/sagemaker"):])
            doc = (fn.__doc__ or "").strip().splitlines()
            shape = declared(fn)
            ok: dict = {"description": "JSON (204 has no body)"}
            if shape is not None and shape.answer is not None:
                ok["content"] = {"application/json": {"schema": schemas.named(shape.answer)}}
            op: dict = {
                "operationId": fn.__name__,
                "summary": SUMMARIES.get(key) or (doc[0] if doc else fn.__name__.replace("_", " ")),
                "parameters": [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                               for p in re.findall(r"\{(\w+)\}", clean)]
                + (query_parameters(shape, schemas) if shape is not None and shape.query is not None else []),
                "responses": {
                    "2XX": ok,
                    "default": {"description": "an error", "content": {"application/json": {"schema": error}}},
                },
            }
            if key in V2_EXTENSIONS:
                op["x-comfyui-sagemaker-extension"] = V2_EXTENSIONS[key]
            if key[1] in deprecation.SUCCESSORS:  # the successor's handler: its operationId is taken
                op.update(deprecated=True, operationId=fn.__name__ + "_deprecated")
            if shape is not None and (shape.body is not None or shape.media != "application/json"):
                op["requestBody"] = request_body(shape, schemas)
            paths.setdefault(clean, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "comfyui-sagemaker", "version": __version__,
                 "description": "Routes are also served under ComfyUI's /api/ alias. Mutating routes need a "
                                "matching Origin and, when configured, the token."},
        "paths": paths,
        "components": {"schemas": schemas.components, "securitySchemes": {
            "token": {"type": "apiKey", "in": "header", "name": "X-SageMaker-Token",
                      "description": "needed by mutating routes when a token is configured or ComfyUI listens "
                                     "off loopback"}}},
    }


async def get_openapi(request: web.Request, ctx: RouteContext) -> web.Response:
    from . import ROUTE_TABLES  # the package imports this module

    return json_ok(document(ROUTE_TABLES))


ROUTES = [("GET", "/openapi.json", get_openapi)]
