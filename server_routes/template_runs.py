"""Running a template by its parameters: POST /sagemaker/templates/{name}/executions (on its endpoint)
and POST /sagemaker/templates/{name}/prompt (the filled prompt, to queue on a ComfyUI).

`{inputs: {param: value}, wait?: seconds, client_id?: str}`: the inputs are checked against the
template's parameter schema (422 invalid_inputs with per-field reasons), base64
images are written into ComfyUI's input folder under a content-derived name,
the values are filled into the template's prompt, which runs as an execution
on the template's endpoint. Without `wait` (or when the run outlasts it) the
answer is 202 with the execution; when it ended within `wait`, 200 with its
outputs, also by output name (the template's output nodes). `client_id` is ComfyUI's own: the
browser of that websocket client gets the run's ComfyUI events (executing, executed, ...), as for a
prompt it queued; without one, no browser does.

/prompt takes `{inputs}`, checks and stores them the same way and answers `{prompt, workflow}`: the
template's prompt with the values set on its parameter nodes (which output them when run), ready for
ComfyUI's POST /prompt. The sidebar form runs a template that way when Prompt on AWS is off.
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

FIELDS = {"inputs", "wait", "client_id"}
PROMPT_FIELDS = {"inputs"}
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


def filled(ctx: Context, name: str, inputs: object):
    """(the template, its prompt with the inputs set on its parameter nodes): validate, store images. Blocking."""
    template = ctx.services.templates.get(name)  # TemplateNotFound -> 404
    schema = template.parameters
    input_dir = ctx.host.input_dir()
    values = parameters.validate_inputs(schema, inputs, lambda n: input_path(input_dir, n) is not None)
    for key, value in values.items():
        if isinstance(value, bytes):
            values[key] = write_image(input_dir, value)
    return template, parameters.fill(template.prompt, schema, values)


def prepare(ctx: Context, name: str, inputs: object) -> tuple[dict, dict]:
    """(the prompt an endpoint runs, the template's schema): filled, then lowered. Blocking."""
    template, prompt = filled(ctx, name, inputs)
    return parameters.lower(prompt), template.parameters or {}


def named_outputs(schema: dict, outputs: dict) -> dict:
    """The execution's outputs under the template's output names."""
    marked = schema.get("x-outputs") or {}
    return {out: (outputs.get(spec["node"]) or {}).get("images", []) for out, spec in marked.items()}


async def run_template(request: web.Request, ctx: Context) -> web.Response:
    body = await read_object(request, FIELDS)
    client_id = body.get("client_id")
    if client_id is not None and not (isinstance(client_id, str) and 0 < len(client_id) <= 200):
        raise BadRequest("client_id must be a websocket client id (a string of 1 to 200 characters)")
    wait = body.get("wait", 0)
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= MAX_WAIT:
        raise BadRequest(f"wait must be a number of seconds from 0 to {MAX_WAIT}")
    name = request.match_info["name"]
    prompt, schema = await asyncio.to_thread(prepare, ctx, name, body.get("inputs"))
    svc = ctx.services.executions
    record = await asyncio.to_thread(svc.create, prompt, None, name, None, client_id, ctx.user(request))
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


async def template_prompt(request: web.Request, ctx: Context) -> web.Response:
    body = await read_object(request, PROMPT_FIELDS)
    template, prompt = await asyncio.to_thread(filled, ctx, request.match_info["name"], body.get("inputs"))
    return json_ok({"prompt": prompt, "workflow": template.workflow})


ROUTES = [
    ("POST", "/templates/{name}/executions", run_template),
    ("POST", "/templates/{name}/prompt", template_prompt),
]
