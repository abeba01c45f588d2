"""Running a template by its parameters, for programs: POST /sagemaker/templates/{name}/executions.

`{inputs: {param: value}, wait?: seconds}`: the inputs are checked against the
template's parameter schema (422 invalid_inputs with per-field reasons), base64
images are written into ComfyUI's input folder under a content-derived name,
the values are filled into the template's prompt, which runs as an execution
on the template's endpoint. Without `wait` (or when the run outlasts it) the
answer is 202 with the execution; when it ended within `wait`, 200 with its
outputs, also by output name (the template's output nodes).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import time
from pathlib import Path

from aiohttp import web

from ..core import parameters
from ..core.errors import BadRequest
from ..core.executions import FINAL
from ..core.inputs import input_path
from .context import Context
from .http import json_ok, read_object

FIELDS = {"inputs", "wait"}
MAX_WAIT = 3600
POLL_SECONDS = 0.1


def write_image(input_dir: Path, data: bytes) -> str:
    """Put image bytes in the input folder as `sagemaker-<sha256[:16]><ext>` (the same bytes, the same
    name: written once, exclusively, never over another file); return the name."""
    name = f"sagemaker-{hashlib.sha256(data).hexdigest()[:16]}{parameters.image_extension(data)}"
    dest = Path(input_dir) / name
    if dest.exists():
        return name
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".sagemaker-upload-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            os.link(tmp, dest)
        except FileExistsError:
            pass  # another request wrote the same content first
    finally:
        os.unlink(tmp)
    return name


def prepare(ctx: Context, name: str, inputs: object) -> tuple[dict, dict]:
    """(the prompt to run, the template's schema): validate, store images, fill, lower. Blocking."""
    template = ctx.services.templates.get(name)  # TemplateNotFound -> 404
    schema = template.parameters
    input_dir = ctx.host.input_dir()
    values = parameters.validate_inputs(schema, inputs, lambda n: input_path(input_dir, n) is not None)
    for key, value in values.items():
        if isinstance(value, bytes):
            values[key] = write_image(input_dir, value)
    return parameters.lower(parameters.fill(template.prompt, schema, values)), schema or {}


def named_outputs(schema: dict, outputs: dict) -> dict:
    """The execution's outputs under the template's output names."""
    marked = schema.get("x-outputs") or {}
    return {out: (outputs.get(spec["node"]) or {}).get("images", []) for out, spec in marked.items()}


async def run_template(request: web.Request, ctx: Context) -> web.Response:
    body = await read_object(request)
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise BadRequest(f"unknown fields: {', '.join(unknown)} (allowed: {', '.join(sorted(FIELDS))})")
    wait = body.get("wait", 0)
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= MAX_WAIT:
        raise BadRequest(f"wait must be a number of seconds from 0 to {MAX_WAIT}")
    name = request.match_info["name"]
    prompt, schema = await asyncio.to_thread(prepare, ctx, name, body.get("inputs"))
    svc = ctx.services.executions
    record = await asyncio.to_thread(svc.create, prompt, None, name, None, None)
    deadline = time.monotonic() + wait
    while wait and record["state"] not in FINAL and time.monotonic() < deadline:
        await asyncio.sleep(POLL_SECONDS)
        record = await asyncio.to_thread(svc.get, record["id"])
    record = {k: v for k, v in record.items() if k != "client_id"}
    done = record["state"] in FINAL
    answer = {"execution_id": record["id"], "prompt_id": record["prompt_id"], "execution": record}
    if done:
        answer["outputs"] = named_outputs(schema, record.get("outputs") or {})
    return json_ok(answer, status=200 if done else 202)


ROUTES = [
    ("POST", "/templates/{name}/executions", run_template),
]
