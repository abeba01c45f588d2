"""Model routes: list, upload (streamed to disk), download by URL (a task), delete."""

from __future__ import annotations

import asyncio
import hashlib
import os

from aiohttp import web

from ..core.errors import BadRequest
from . import deprecation
from .context import Context
from .http import json_ok, shapes, the
from .schemas import ModelDownload, ModelUploadQuery


async def list_models(request: web.Request, ctx: Context) -> web.Response:
    return json_ok(await asyncio.to_thread(ctx.services.models.list))


@shapes(query=ModelUploadQuery, media="application/octet-stream", read=False)  # the bytes: streamed below
async def upload_model(request: web.Request, ctx: Context) -> web.Response:
    """PUT the file's bytes as the body: streamed to a temporary name, renamed when complete.

    An existing model is a 409 model_exists unless `?overwrite=true`, also if it appears during the upload."""
    svc = ctx.services.models
    folder = request.match_info["folder"]
    target = svc.target(folder, request.match_info["name"])
    q = the(request, ModelUploadQuery)
    overwrite = q.overwrite
    how = "send ?overwrite=true"
    if not overwrite:
        await asyncio.to_thread(svc.refuse_existing, folder, target.name, how)
    tmp = svc.temp_for(target)
    h = hashlib.sha256()
    size = 0
    f = await asyncio.to_thread(open, tmp, "xb")
    try:
        while chunk := await request.content.read(4 << 20):
            h.update(chunk)
            size += len(chunk)
            await asyncio.to_thread(f.write, chunk)
        await asyncio.to_thread(f.close)
        expected = q.sha256
        if expected and expected.lower() != h.hexdigest():
            raise BadRequest(f"sha256 mismatch: expected {expected.lower()}, got {h.hexdigest()}; nothing was kept")
        await asyncio.to_thread(svc.install, tmp, target, folder, overwrite, how)
        st = target.stat()  # the digest is known: no one needs to read the file again for it
        ctx.services.hash_cache.put(os.path.abspath(target), st.st_size, st.st_mtime_ns, h.hexdigest())
    finally:
        f.close()
        if tmp.exists():
            tmp.unlink()
    return json_ok({"folder": folder, "name": target.name, "size": size,
                    "sha256": h.hexdigest()}, status=201)


@shapes(body=ModelDownload)
async def download_model(request: web.Request, ctx: Context) -> web.Response:
    body = the(request, ModelDownload)
    task = await asyncio.to_thread(ctx.services.models.download, body.folder, body.name, body.url, body.sha256,
                                  body.overwrite)
    return json_ok(deprecation.task_started(task.to_json()), status=202)


async def delete_model(request: web.Request, ctx: Context) -> web.Response:
    await asyncio.to_thread(ctx.services.models.delete, request.match_info["folder"], request.match_info["name"])
    return web.Response(status=204)


ROUTES = [
    ("GET", "/models", list_models),
    ("PUT", "/models/{folder}/{name}", upload_model),
    ("POST", "/models/download", download_model),
    ("DELETE", "/models/{folder}/{name:.+}", delete_model),
]
