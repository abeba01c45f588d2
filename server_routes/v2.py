"""The Comfy API v2, one surface per environment: `/sagemaker/v2/<environment>/api/v2/...` (a prefix-mounted
deployment: point Comfy's SDK at `COMFY_BASE_URL=<ComfyUI>/sagemaker/v2/<environment>`). The gateway serves
the same routes. Handlers parse, call the services (core/v2/jobs_v2.py, core/v2/assets.py, core/v2/job_events.py) and
write; the guard, the policy and the error mapping (errors.py, the v2 face) are the extension's own.

Jobs: POST/GET /jobs (?status=, ?metadata[k]=), GET /jobs/{id}, GET /jobs/{id}/workflow, GET
/jobs/{id}/events (SSE), POST /jobs/{id}/cancel. Assets: POST /assets (multipart: file, content_type,
file_path, expected_hash, tags), HEAD /assets/by-hash/{hash}, POST /assets/from-hash, GET|DELETE
/assets/{id}, GET /assets/{id}/content (Range). `Idempotency-Key` on POST /jobs and POST /assets.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from datetime import datetime, timezone

from aiohttp import hdrs, web

from ..core.errors import BadRequest, PayloadTooLarge, SageMakerError, message_of
from ..core.names import ENVIRONMENT_NAME
from ..core.store import BlobCorrupt, KeyNotFound, blob_key
from ..core.v2.assets import MAX_UPLOAD_BYTES, Asset, AssetNotFound, parse_hash
from ..core.v2.blob_reads import verified_pieces
from ..core.v2.idempotency import Replay, fingerprint
from ..core.v2.job_events import KEEPALIVE, JobEvents, frame
from ..core.v2.job_view import URL_LIFETIME, Job, Mount
from ..core.v2.jobs_v2 import JobRequest, JobWorkflow
from .context import RouteContext
from .errors import v2_message
from .http import json_ok, log, read_json, shapes, the
from .schemas import AssetFromHash, AssetUpload, V2JobsQuery

PREFIX = "/v2/{environment}/api/v2"
HEARTBEAT_S = 15.0
POLL_S = 0.5
CHUNK = 1024 * 1024
FIELD_LIMIT = 4096
INVERTED_RANGE = "start cannot be after end"  # aiohttp's http_range on "bytes=5-2": unsatisfiable, not ignored
METADATA_FILTER = re.compile(r"metadata\[(.{1,64})\]")
UPLOAD_TEXT = frozenset(AssetUpload.model_fields) - {"file"}  # the form's text fields


def mount(request: web.Request) -> Mount:
    """This request's origin and the mount prefix it came through (/sagemaker or ComfyUI's /api/sagemaker)."""
    path = request.path
    prefix = path[: path.index("/api/v2")]
    proto = request.headers.get("X-Forwarded-Proto", "").lower()
    scheme = proto if proto in ("http", "https") else request.scheme
    return Mount(f"{scheme}://{request.host}", prefix)


def environment(request: web.Request) -> str:
    return ENVIRONMENT_NAME.check(request.match_info["environment"])


def asset_json(asset: Asset, m: Mount, created_new: bool | None = None) -> dict:
    out = {"id": asset.id, "hash": f"blake3:{asset.blake3}" if asset.blake3 else None, "size_bytes": asset.size,
           "content_type": asset.content_type, "file_path": asset.file_path, "created_at": asset.created_at,
           "url": m.url(f"/assets/{asset.id}/content"),
           "url_expires_at": (datetime.now(timezone.utc) + URL_LIFETIME).isoformat(timespec="seconds")
           .replace("+00:00", "Z"), "expires_at": None, "job_id": asset.job_id}
    if created_new is not None:
        out["created_new"] = created_new
    return out


# jobs

@shapes(body=JobRequest, answer=Job, read=False)  # core/jobs_v2.py checks it, as sent (the idempotency fingerprint)
async def v2_create_job(request: web.Request, ctx: RouteContext) -> web.Response:
    body = await read_json(request)
    job = await asyncio.to_thread(ctx.services.jobs_v2.create, environment(request), body, mount(request),
                                  ctx.user(request), request.headers.get("Idempotency-Key"))
    return json_ok(job, status=201)


@shapes(query=V2JobsQuery)
async def v2_list_jobs(request: web.Request, ctx: RouteContext) -> web.Response:
    q = the(request, V2JobsQuery)
    page = await asyncio.to_thread(ctx.services.jobs_v2.list, environment(request), mount(request), q.limit, q.cursor,
                                   ctx.user(request), q.status)
    wanted = {m.group(1): v for k, v in request.query.items() if (m := METADATA_FILTER.fullmatch(k))}
    if wanted:
        page["jobs"] = [j for j in page["jobs"] if all(j["metadata"].get(k) == v for k, v in wanted.items())]
    return json_ok(page)


@shapes(answer=Job)
async def v2_get_job(request: web.Request, ctx: RouteContext) -> web.Response:
    return json_ok(await asyncio.to_thread(ctx.services.jobs_v2.get, environment(request), request.match_info["id"],
                                           mount(request), ctx.user(request)))


@shapes(answer=JobWorkflow)
async def v2_job_workflow(request: web.Request, ctx: RouteContext) -> web.Response:
    return json_ok(await asyncio.to_thread(ctx.services.jobs_v2.workflow, environment(request),
                                           request.match_info["id"], ctx.user(request)))


@shapes(answer=Job)
async def v2_cancel_job(request: web.Request, ctx: RouteContext) -> web.Response:
    return json_ok(await asyncio.to_thread(ctx.services.jobs_v2.cancel, environment(request),
                                           request.match_info["id"], mount(request), ctx.config.role,
                                           ctx.user(request), ctx.shared))


async def v2_job_events(request: web.Request, ctx: RouteContext) -> web.StreamResponse:
    """Server-sent events of one job (see core/v2/job_events.py). A client that goes away ends its stream here
    and leaves nothing behind; one that comes back gets a fresh snapshot."""
    services = ctx.services
    events = JobEvents(services.jobs_v2, environment(request), request.match_info["id"], mount(request),
                       ctx.user(request))
    frames = await asyncio.to_thread(events.poll)  # JobNotFound -> 404, before anything is streamed
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    live = services.live_jobs
    wake = live.subscribe(events.job_id)
    stopping = request.app.get("draining")
    last_write = asyncio.get_running_loop().time()
    try:
        while True:
            for event, data in frames:
                await response.write(frame(event, data))
                last_write = asyncio.get_running_loop().time()
            if events.ended or (stopping is not None and stopping.is_set()):
                break  # the end; or this process stops (the client reconnects elsewhere)
            await _either(wake, stopping, HEARTBEAT_S if events.live and not events.pending else POLL_S)
            wake.clear()
            if asyncio.get_running_loop().time() - last_write >= HEARTBEAT_S:
                await response.write(KEEPALIVE)  # also how a client that left is noticed
                last_write = asyncio.get_running_loop().time()
            frames = await asyncio.to_thread(events.poll)
    except (ConnectionError, asyncio.CancelledError):
        pass  # the client went away
    except SageMakerError as err:  # the store failing mid-stream: say so as an event, then end
        try:
            await response.write(frame("log", {"level": "error", "message": v2_message(err)}))
        except ConnectionError:
            pass
    except Exception:
        log.exception("comfyui-sagemaker: the event stream of %s failed", events.job_id)
    finally:
        live.unsubscribe(events.job_id, wake)
    return response


async def _either(wake: asyncio.Event, stopping: asyncio.Event | None, timeout: float) -> None:
    """Until a change is pushed, the process starts stopping, or `timeout` s pass."""
    waits = [asyncio.ensure_future(wake.wait())]
    if stopping is not None:
        waits.append(asyncio.ensure_future(stopping.wait()))
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


# assets

async def _read_upload(request: web.Request, ctx: RouteContext) -> tuple[dict, str, str, str, int]:
    """The multipart form: (its text fields, temp file path, sha256, blake3 hex, size). The file part is
    streamed to a temporary file in our scratch folder (swept at start if this process is killed) and hashed
    both ways on the way."""
    from blake3 import blake3  # lazily: only uploads need it

    if not request.content_type.startswith("multipart/form-data"):
        raise BadRequest("send multipart/form-data with a file part and content_type, file_path fields")
    reader = await request.multipart()
    fields: dict = {"tags": []}
    path, sha, b3, size = None, None, None, 0
    try:
        while (part := await reader.next()) is not None:
            name = part.name
            if name == "file":
                if path is not None:
                    raise BadRequest("one file part only")
                fd, path = ctx.services.scratch.file("asset")
                h256, h3 = hashlib.sha256(), blake3()
                with os.fdopen(fd, "wb") as out:
                    while chunk := await part.read_chunk(CHUNK):
                        size += len(chunk)
                        if size > MAX_UPLOAD_BYTES:
                            raise PayloadTooLarge(f"an asset is at most {MAX_UPLOAD_BYTES} bytes")
                        h256.update(chunk)
                        h3.update(chunk)
                        await asyncio.to_thread(out.write, chunk)
                sha, b3 = h256.hexdigest(), h3.hexdigest()
                fields.setdefault("file_name", part.filename)
            elif name in UPLOAD_TEXT:
                value = (await part.read(decode=True))
                if len(value) > FIELD_LIMIT:
                    raise BadRequest(f"form field {name} is over {FIELD_LIMIT} bytes")
                text = value.decode("utf-8", errors="replace")
                if name == "tags":
                    fields["tags"].append(text)
                else:
                    fields[name] = text
            else:
                await part.release()
        if path is None:
            raise BadRequest("the form has no file part")
        return fields, path, sha, b3, size  # type: ignore[return-value]
    except BaseException:
        if path is not None:
            os.unlink(path)
        raise


@shapes(body=AssetUpload, media="multipart/form-data", read=False)  # streamed part by part: _read_upload
async def v2_upload_asset(request: web.Request, ctx: RouteContext) -> web.Response:
    environment(request)
    fields, path, sha, b3, size = await _read_upload(request, ctx)
    services, user = ctx.services, ctx.user(request)
    try:
        key = request.headers.get("Idempotency-Key")
        claim = None
        if key is not None:
            scope = f"assets.{services.executions.owner_for(user).key}"
            request_fp = fingerprint({k: fields.get(k) for k in sorted(UPLOAD_TEXT)}
                                     | {"sha256": sha})
            got = await asyncio.to_thread(services.idempotency.begin, scope, key, request_fp)
            if isinstance(got, Replay):
                response = json_ok(got.response, status=got.status)
                response.headers["Idempotency-Replayed"] = "true"
                return response
            claim = got
        try:
            asset, new = await asyncio.to_thread(
                services.assets.ingest, path, sha, b3, size, fields.get("content_type"),
                fields.get("file_path") or fields.get("file_name"), fields.get("expected_hash"), user)
        except BaseException:
            if claim is not None:
                await asyncio.to_thread(services.idempotency.abandon, claim)
            raise
        body, status = asset_json(asset, mount(request), new), 201 if new else 200
        if claim is not None:
            await asyncio.to_thread(services.idempotency.finish, claim, status, body)
        return json_ok(body, status=status)
    finally:
        os.unlink(path)


async def v2_head_by_hash(request: web.Request, ctx: RouteContext) -> web.Response:
    environment(request)
    found = await asyncio.to_thread(ctx.services.assets.blob_of, request.match_info["hash"])
    return web.Response(status=200 if found else 404)


@shapes(body=AssetFromHash)
async def v2_asset_from_hash(request: web.Request, ctx: RouteContext) -> web.Response:
    environment(request)
    body = the(request, AssetFromHash)
    parse_hash(body.hash)
    asset = await asyncio.to_thread(ctx.services.assets.from_hash, body.hash, body.file_path, body.content_type,
                                    ctx.user(request))
    return json_ok(asset_json(asset, mount(request), False), status=201)


async def v2_get_asset(request: web.Request, ctx: RouteContext) -> web.Response:
    environment(request)
    asset = await asyncio.to_thread(ctx.services.assets.get, request.match_info["id"])
    return json_ok(asset_json(asset, mount(request)))


async def v2_delete_asset(request: web.Request, ctx: RouteContext) -> web.Response:
    environment(request)
    await asyncio.to_thread(ctx.services.jobs_v2.delete_asset, request.match_info["id"], ctx.user(request))
    return web.Response(status=204)


def byte_range(request: web.BaseRequest, size: int) -> tuple[int, int] | None:
    """(first, last) of the request's one `bytes=` range, as aiohttp reads it (`request.http_range`); None for
    the whole: no Range, or one that is not served (several ranges, another unit, no numbers), which RFC 9110
    lets a server ignore. ValueError when it cannot be satisfied: past the end, last before first, an empty
    suffix."""
    header = request.headers.get(hdrs.RANGE)
    if not header:
        return None
    try:
        wanted = request.http_range
    except ValueError as err:
        if str(err) == INVERTED_RANGE:
            raise
        return None
    start, stop = wanted.start, wanted.stop
    # aiohttp gives the last n bytes as start -n; "-0" becomes 0, which only the header tells from "0-".
    if start < 0 or header.partition("=")[2].lstrip().startswith("-"):
        if start == 0 or size == 0:
            raise ValueError("empty suffix range")
        return max(size + start, 0), size - 1
    end = min(stop - 1, size - 1) if stop is not None else size - 1
    if start >= size or end < start:
        raise ValueError("range outside the content")
    return start, end


async def v2_asset_content(request: web.Request, ctx: RouteContext) -> web.StreamResponse:
    """The asset's bytes (or one range of them), each answer checked against the asset's digests as it is read
    (core/v2/blob_reads.py): its last piece goes out only once the whole blob matched. A mismatch found before
    anything was sent is a 502 `blob_corrupt`; after, the connection is aborted, so the answer stays short."""
    environment(request)
    services = ctx.services
    asset = await asyncio.to_thread(services.assets.get, request.match_info["id"])
    store, key = services.store, blob_key(asset.sha256)
    size = await asyncio.to_thread(store.size, key)
    if size is None:
        raise AssetNotFound(f"the bytes of asset {asset.id} are no longer in the store")
    try:
        wanted = byte_range(request, size)
    except ValueError:
        return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
    start, end = wanted if wanted else (0, size - 1)
    length = end - start + 1 if size else 0
    headers = {"Content-Type": asset.content_type, "Accept-Ranges": "bytes", "Content-Length": str(length),
               "ETag": f'"{asset.sha256}"', "Cache-Control": "private, max-age=3600",
               "Content-Disposition": f'attachment; filename="{_quoted(asset.file_path or asset.id)}"'}
    if wanted:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    response = web.StreamResponse(status=206 if wanted else 200, headers=headers)
    if request.method == "HEAD":
        await response.prepare(request)
        return response
    pieces = verified_pieces(store, asset.sha256, size, start, end, asset.blake3)
    try:
        piece = await asyncio.to_thread(next, pieces, None)  # a blob of one piece is checked before any answer
    except KeyNotFound:
        raise AssetNotFound(f"the bytes of asset {asset.id} are no longer in the store") from None
    await response.prepare(request)
    try:
        while piece is not None:
            await response.write(piece)
            piece = await asyncio.to_thread(next, pieces, None)
    except ConnectionError:
        pass  # the client went away
    except Exception as err:  # BlobCorrupt (logged), the blob gone or the store failing mid-way
        if not isinstance(err, BlobCorrupt):
            log.warning("comfyui-sagemaker: asset %s cut short: %s", asset.id, message_of(err))
        _abort(request)
    return response


def _abort(request: web.Request) -> None:
    """End the connection with the answer incomplete: a client sees a body shorter than its Content-Length,
    never a complete one (nor, on a kept-alive connection, a wait for bytes that will not come)."""
    if request.transport is not None:
        request.transport.abort()


def _quoted(name: str) -> str:
    return re.sub(r'[^A-Za-z0-9._ -]', "_", name)[:200]


ROUTES = [
    ("POST", PREFIX + "/jobs", v2_create_job),
    ("GET", PREFIX + "/jobs", v2_list_jobs),
    ("GET", PREFIX + "/jobs/{id}", v2_get_job),
    ("GET", PREFIX + "/jobs/{id}/workflow", v2_job_workflow),
    ("GET", PREFIX + "/jobs/{id}/events", v2_job_events),
    ("POST", PREFIX + "/jobs/{id}/cancel", v2_cancel_job),
    ("POST", PREFIX + "/assets", v2_upload_asset),
    ("HEAD", PREFIX + "/assets/by-hash/{hash}", v2_head_by_hash),
    ("POST", PREFIX + "/assets/from-hash", v2_asset_from_hash),
    ("GET", PREFIX + "/assets/{id}", v2_get_asset),
    ("DELETE", PREFIX + "/assets/{id}", v2_delete_asset),
    ("GET", PREFIX + "/assets/{id}/content", v2_asset_content),
]
