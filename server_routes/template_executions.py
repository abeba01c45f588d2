"""Running a template by its parameters: POST /sagemaker/templates/{name}/executions (on its endpoint)
and POST /sagemaker/templates/{name}/prompt (the filled prompt, to queue on a ComfyUI).

`{inputs: {param: value}, wait?: seconds, client_id?: str, webhook_url?: str}`: the inputs are checked
against the template's parameter schema (422 invalid_inputs with per-field reasons), base64 images are
written into ComfyUI's input folder under a content-derived name (into the store, in the gateway), the
values are filled into the template's prompt (core/template_executions.py), which runs as an execution on
the template's endpoint; `webhook_url` gets a signed POST of the record when it ends (core/webhooks.py).
Without `wait` (or when the execution outlasts it) the answer is 202 with the execution; when it ended
within `wait`, 200 with its outputs, also by output name (the template's output nodes). `client_id` is
ComfyUI's own: the browser of that websocket client gets the execution's ComfyUI events (executing,
executed, ...), as for a prompt it queued; without one, no browser does.

/prompt takes `{inputs}`, checks and stores them the same way and answers `{prompt, workflow}`: the
template's prompt with the values set on its parameter nodes (which output them when run), ready for
ComfyUI's POST /prompt. The sidebar form runs a template that way when Prompt on AWS is off.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from ..core.executions import FINAL
from ..core.template_executions import named_outputs
from .context import RouteContext
from .http import json_ok, shapes, the
from .schemas import TemplateExecutionCreate, TemplatePrompt

POLL_SECONDS = 0.1


@shapes(body=TemplateExecutionCreate)
async def run_template(request: web.Request, ctx: RouteContext) -> web.Response:
    body = the(request, TemplateExecutionCreate)
    wait = body.wait
    name = request.match_info["name"]
    stored: dict[str, str] = {}
    prompt, schema = await asyncio.to_thread(ctx.services.template_executions.prepare, name, body.inputs, stored)
    svc = ctx.services.executions
    record = await asyncio.to_thread(svc.create, prompt, None, name, None, body.client_id, ctx.user(request),
                                     stored_inputs=stored, webhook_url=body.webhook_url)
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


@shapes(body=TemplatePrompt)
async def template_prompt(request: web.Request, ctx: RouteContext) -> web.Response:
    template, prompt = await asyncio.to_thread(ctx.services.template_executions.filled, request.match_info["name"],
                                               the(request, TemplatePrompt).inputs)
    return json_ok({"prompt": prompt, "workflow": template.workflow})


ROUTES = [
    ("POST", "/templates/{name}/executions", run_template),
    ("POST", "/templates/{name}/prompt", template_prompt),
]
