"""GET /sagemaker/snapshot and POST /sagemaker/analyze."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..core import analysis, model_files, snapshot
from ..core.errors import BadRequest, SageMakerError
from .context import Context
from .http import json_ok, read_object


def snapshot_facts(ctx: Context) -> snapshot.SnapshotFacts:
    f = ctx.facts
    return snapshot.SnapshotFacts(f.version, f.custom_node_dirs, f.model_folders(), str(f.extension_dir))


def analyze_workflow(ctx: Context, workflow: object) -> dict:
    if ctx.facts.catalog is None:
        raise SageMakerError("analysis needs ComfyUI's node registry")
    index = model_files.scan(ctx.facts.model_folders())
    exists = analysis.safe_input_exists(str(ctx.facts.input_dir))
    return analysis.analyze(workflow, ctx.facts.catalog, index, exists).to_json()


async def get_snapshot(request: web.Request, ctx: Context) -> web.Response:
    return json_ok(await asyncio.to_thread(snapshot.take, snapshot_facts(ctx)))


async def post_analyze(request: web.Request, ctx: Context) -> web.Response:
    body = await read_object(request)
    if "workflow" not in body:
        raise BadRequest("missing field: workflow (ComfyUI's UI or API format)")
    return json_ok(await asyncio.to_thread(analyze_workflow, ctx, body["workflow"]))


ROUTES = [("GET", "/snapshot", get_snapshot), ("POST", "/analyze", post_analyze)]
