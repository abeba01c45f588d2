"""Template routes: thin handlers over core.templates.TemplateService."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..core import proofs
from ..core.templates import UNSET, Template
from .context import RouteContext
from .http import json_ok, shapes, the
from .schemas import TemplateCreate, TemplateProofCreate, TemplatesList, TemplateUpdate


@shapes(answer=TemplatesList)
async def list_templates(request: web.Request, ctx: RouteContext) -> web.Response:
    """Every template; `skipped` [{key, reason}] names those that cannot be read (core/unreadable.py)."""
    templates, skipped = await asyncio.to_thread(ctx.services.templates.listing)
    return json_ok(TemplatesList(templates=templates, skipped=skipped))


@shapes(body=TemplateCreate, answer=Template)
async def create_template(request: web.Request, ctx: RouteContext) -> web.Response:
    body = the(request, TemplateCreate)
    template = await asyncio.to_thread(ctx.services.templates.create, body.name, body.workflow, body.prompt,
                                       body.environment)
    return json_ok(template.to_json(), status=201)


@shapes(answer=Template)
async def get_template(request: web.Request, ctx: RouteContext) -> web.Response:
    template = await asyncio.to_thread(ctx.services.templates.get, request.match_info["name"])
    return json_ok(template.to_json())


@shapes(body=TemplateUpdate, answer=Template)
async def update_template(request: web.Request, ctx: RouteContext) -> web.Response:
    body = the(request, TemplateUpdate)
    template = await asyncio.to_thread(
        ctx.services.templates.update,
        request.match_info["name"],
        environment=body.environment if "environment" in body.model_fields_set else UNSET,
        workflow=body.workflow,
        prompt=body.prompt,
        expected_version=body.version,
        environment_version=body.environment_version if "environment_version" in body.model_fields_set else UNSET,
    )
    return json_ok(template.to_json())


@shapes(body=TemplateProofCreate, answer=Template)
async def use_as_proof(request: web.Request, ctx: RouteContext) -> web.Response:
    """Use one of the template's succeeded runs as its proof: its parameters' values, its input files and what
    each output node gave, proven on each new version of its environment before traffic moves (core/proofs.py)."""
    body, name, svc = the(request, TemplateProofCreate), request.match_info["name"], ctx.services

    def record() -> Template:
        run = svc.executions.get(body.execution_id, ctx.user(request), localise=False)
        return proofs.use_run(svc.templates, run, svc.prover.read_blob, name, body.hash_tolerance, svc.owner.name)

    return json_ok((await asyncio.to_thread(record)).to_json())


@shapes(answer=Template)
async def drop_proof(request: web.Request, ctx: RouteContext) -> web.Response:
    template = await asyncio.to_thread(ctx.services.templates.update, request.match_info["name"], proof=None)
    return json_ok(template.to_json())


async def delete_template(request: web.Request, ctx: RouteContext) -> web.Response:
    await asyncio.to_thread(ctx.services.templates.delete, request.match_info["name"])
    return web.Response(status=204)


ROUTES = [
    ("GET", "/templates", list_templates),
    ("POST", "/templates", create_template),
    ("GET", "/templates/{name}", get_template),
    ("PUT", "/templates/{name}", update_template),
    ("DELETE", "/templates/{name}", delete_template),
    ("POST", "/templates/{name}/proof", use_as_proof),
    ("DELETE", "/templates/{name}/proof", drop_proof),
]
