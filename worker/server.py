"""SageMaker's container contract in front of a headless ComfyUI.

- `GET /ping`: 200 only when the environment is materialised and ComfyUI
  answers, else 503; answered from state (never waits on a prompt), so it
  stays fast while one runs.
- `POST /invocations` `{execution_id, prompt, inputs: {filename: sha256}}`:
  runs one prompt (others queue); outputs go to the store. With
  `Accept: application/x-ndjson` the response streams ComfyUI's events, one
  JSON object a line, ending with `{"type": "result", "data": <result>}`.
- `GET /status`: state, reason, what materialisation downloaded (for local endpoints).

Who may call: requests from a browser page (any `Origin` header) are refused;
with a token (local endpoints set one each), `/invocations` and `/status` need
it in `X-Worker-Token`. On SageMaker only SageMaker's front door reaches the
container. `/ping` stays open: it says ready or not, nothing else.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from ..core.errors import SageMakerError
from ..core.executions import CANCEL_PREFIX, ID_RE
from ..core.hashing import file_sha256
from .comfy import PREVIEW_EVENT, ComfyProcess, PromptRejected
from .materialise import EXTENSION_FOLDER, MaterialiseError, Materialiser, place_input, safe_relative
from .settings import TOKEN_HEADER, WorkerSettings

log = logging.getLogger("comfyui_sagemaker.worker")
NDJSON = "application/x-ndjson"



def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class Worker:
    def __init__(self, settings: WorkerSettings):
        self.s = settings
        self.state = "starting"  # starting | ready | failed
        self.reason: str | None = None
        self.materialiser = Materialiser(settings.manifest_uri, settings.cache_dir, settings.base_dir)
        self.comfy: ComfyProcess | None = None
        self.node_types: set[str] = set()
        self.lock = asyncio.Lock()  # one prompt at a time per ComfyUI
        self.session: aiohttp.ClientSession | None = None
        self.started = time.monotonic()
        self.ready_after: float | None = None
        self.current: str | None = None  # the execution holding the ComfyUI
        self.current_prompt_id: str | None = None
        self.cancelled: set[str] = set()

    # start-up

    def link_extension(self) -> None:
        if not self.s.extension_dir:
            return
        link = self.s.base_dir / "custom_nodes" / EXTENSION_FOLDER
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists() and not link.is_symlink():
            link.symlink_to(self.s.extension_dir, target_is_directory=True)

    async def prepare(self) -> None:
        try:
            layers = await asyncio.to_thread(self.materialiser.run, self.s.models, self.s.install_packages)
            self.link_extension()
            self.comfy = ComfyProcess(self.s.comfyui_dir, self.s.base_dir, self.s.comfyui_args, layers,
                                      self.s.base_dir / "comfyui.log", self.s.preview_method)
            self.comfy.start()
            await self.comfy.wait_ready(self.session)
            self.node_types = await self.comfy.node_types(self.session)
            self.state = "ready"
            self.ready_after = time.monotonic() - self.started
            log.info("worker ready in %.1f s", self.ready_after)
        except (MaterialiseError, SageMakerError, RuntimeError, OSError, aiohttp.ClientError) as err:
            self.fail(str(getattr(err, "message", None) or err))
        except Exception as err:  # whatever it is, the start ends with a reason the endpoint shows
            log.exception("materialisation failed")
            self.fail(f"{type(err).__name__}: {err}")

    def fail(self, reason: str) -> None:
        self.state, self.reason = "failed", reason
        log.error("worker failed: %s", reason)
        if self.s.exit_after_failure >= 0:
            log.info("exiting in %.0f s", self.s.exit_after_failure)
            asyncio.get_running_loop().call_later(self.s.exit_after_failure, self.exit_failed)

    @staticmethod
    def exit_failed() -> None:
        # aiohttp's run_app stops on SIGINT; the container (or local endpoint) then sees the exit code.
        import os
        import signal

        os.kill(os.getpid(), signal.SIGINT)

    # routes

    async def ping(self, request: web.Request) -> web.Response:
        if self.state != "ready" or self.comfy is None or self.comfy.proc.poll() is not None:
            return web.Response(status=503, text=self.reason or self.state)
        return web.Response(status=200, text="ok")

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response({
            "state": self.state, "reason": self.reason, "ready_after_s": self.ready_after,
            "environment": {k: self.materialiser.manifest.get(k) for k in ("name", "version")},
            "materialise": self.materialiser.report.to_json(),
        })

    async def read_request(self, request: web.Request) -> object:
        """The whole body (aiohttp reads it all, refusing more than client_max_size), as JSON."""
        if request.content_length is not None and request.content_length > self.s.max_body_bytes:
            raise web.HTTPRequestEntityTooLarge(max_size=self.s.max_body_bytes, actual_size=request.content_length)
        body = await request.read()
        try:
            return json.loads(body)
        except RecursionError:
            raise ValueError("nested too deeply") from None

    async def invocations(self, request: web.Request) -> web.StreamResponse:
        if self.state != "ready":
            return error(503, "not_ready", f"worker is {self.state}: {self.reason or 'materialising'}")
        try:
            body = await self.read_request(request)
        except web.HTTPRequestEntityTooLarge:
            return error(413, "payload_too_large", f"request body is over {self.s.max_body_bytes} bytes")
        except (ValueError, UnicodeDecodeError) as err:
            return error(400, "bad_request", f"request body is not JSON: {err}")
        if isinstance(body, dict) and body.get("action") == "cancel":
            return web.json_response(await self.cancel(str(body.get("execution_id") or "")))
        problem = self.check(body)
        if problem:
            return problem
        execution_id = str(body.get("execution_id") or "")
        prompt = body["prompt"]
        try:
            inputs = await self.fetch_inputs(body.get("inputs") or {})
        except MaterialiseError as err:
            return error(400, "input_missing", str(err))
        if self.s.models == "lazy":
            await asyncio.to_thread(self.materialiser.models_for, prompt)

        stream = NDJSON in request.headers.get("Accept", "")
        response: web.StreamResponse | None = None
        if stream:
            response = web.StreamResponse(headers={"Content-Type": NDJSON})
            await response.prepare(request)

        progress = AsyncProgress(self.materialiser.store, execution_id) if not stream and execution_id else None

        async def on_event(event: dict) -> None:
            if progress is not None:
                await progress.add(event)
            if response is None:
                return
            if event.get("type") == "executed" and isinstance((event.get("data") or {}).get("output"), dict):
                # Store this node's files now, so the caller can show them before the run ends.
                output = await asyncio.to_thread(self.store_outputs, {"n": event["data"]["output"]})
                event = {**event, "data": {**event["data"], "output": output["n"]}}
            await response.write(json.dumps(event).encode() + b"\n")

        result = await self.execute(execution_id, prompt, inputs, on_event)
        if progress is not None:
            await progress.flush()
        if response is None:
            status = 400 if result.get("error", {}).get("code") == "prompt_invalid" else 200
            return web.json_response(result, status=status)
        await response.write(json.dumps({"type": "result", "data": result}).encode() + b"\n")
        await response.write_eof()
        return response

    def check(self, body: object) -> web.Response | None:
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), dict) or not body["prompt"]:
            return error(400, "bad_request", "body must be {execution_id, prompt: {...}, inputs: {name: sha256}}")
        inputs = body.get("inputs") or {}
        if not isinstance(inputs, dict) or not all(isinstance(v, str) for v in inputs.values()):
            return error(400, "bad_request", "inputs must be {filename: sha256}")
        types = {n.get("class_type") for n in body["prompt"].values() if isinstance(n, dict)}
        unknown = sorted(t for t in types if t not in self.node_types)
        if unknown:
            env = self.materialiser.manifest.get("name")
            return error(400, "unknown_node_type",
                         f"node type(s) {', '.join(map(str, unknown))} not in environment {env!r}: the environment "
                         "lacks them; publish a new version that includes their pack")
        return None

    async def fetch_inputs(self, inputs: dict) -> list[tuple[Path, str, str]]:
        """Download (or find in the cache) each input by digest; names are checked here too."""
        out = []
        for name, sha in inputs.items():
            safe_relative(name)
            out.append((await asyncio.to_thread(self.materialiser.blob, sha), name, sha))
        return out

    def _submitted(self, prompt_id: str) -> None:
        self.current_prompt_id = prompt_id

    async def cancel(self, execution_id: str) -> dict:
        """Cancel a queued or running execution (sent as an invocation: SageMaker has no other door)."""
        if not execution_id:
            return {"cancelled": False, "reason": "no execution_id"}
        self.cancelled.add(execution_id)
        if self.current == execution_id and self.comfy is not None:
            asyncio.get_running_loop().create_task(self._interrupt_until_done(execution_id))
            return {"cancelled": True, "state": "running"}
        return {"cancelled": True, "state": "queued or unknown"}

    async def _interrupt_until_done(self, execution_id: str, limit: float = 60) -> None:
        # ComfyUI clears its interrupt flag when a prompt starts, so one interrupt sent between submit
        # and start would be lost: repeat it, aimed at this prompt only, until the run has ended.
        deadline = time.monotonic() + limit
        while self.current == execution_id and time.monotonic() < deadline:
            if self.current_prompt_id:
                await self.comfy.interrupt(self.session, self.current_prompt_id)
            await asyncio.sleep(0.1)

    def _cancel_marked(self, execution_id: str) -> bool:
        """SageMaker cannot route a cancel to the instance that runs a prompt: the caller leaves a marker
        in the store (async/cancel/<execution id>) that the run's worker looks for."""
        if not ID_RE.fullmatch(execution_id or ""):
            return False
        try:
            return self.materialiser.store.size(f"{CANCEL_PREFIX}{execution_id}") is not None
        except Exception:  # the store is the caller's: a failed look is not a cancel
            return False

    async def _watch_cancel(self, execution_id: str) -> None:
        while self.current == execution_id:
            await asyncio.sleep(self.s.cancel_poll)
            if self.current == execution_id and await asyncio.to_thread(self._cancel_marked, execution_id):
                await self.cancel(execution_id)
                return

    async def execute(self, execution_id: str, prompt: dict, inputs: list, on_event) -> dict:
        t0 = time.monotonic()
        async with self.lock:
            t_start = time.monotonic()
            if execution_id and (execution_id in self.cancelled or
                                 await asyncio.to_thread(self._cancel_marked, execution_id)):
                return self.result(execution_id, "failed", {}, {"code": "cancelled", "message": "cancelled"}, t0,
                                   t_start)
            self.current, self.current_prompt_id = execution_id, None
            watcher = asyncio.get_running_loop().create_task(self._watch_cancel(execution_id)) \
                if ID_RE.fullmatch(execution_id or "") else None
            for blob, name, sha in inputs:
                await asyncio.to_thread(place_input, blob, name, sha, self.s.base_dir / "input")
            try:
                final, outputs, err = await asyncio.wait_for(
                    self.comfy.run(self.session, prompt, on_event, self._submitted), self.s.invocation_timeout)
            except asyncio.TimeoutError:
                await self.comfy.interrupt(self.session, self.current_prompt_id)
                return self.result(execution_id, "failed", {}, {"code": "timeout", "message":
                                   f"the prompt ran over {self.s.invocation_timeout:.0f} s and was interrupted"}, t0,
                                   t_start)
            except PromptRejected as rej:
                return self.result(execution_id, "failed", {}, {"code": "prompt_invalid", "message":
                                   describe_rejection(rej.body), "details": rej.body}, t0, t_start)
            except (aiohttp.ClientError, RuntimeError) as e:
                return self.result(execution_id, "failed", {}, {"code": "worker_error", "message": str(e)}, t0,
                                   t_start)
            finally:
                self.current = self.current_prompt_id = None
                if watcher is not None:
                    watcher.cancel()
        files = await asyncio.to_thread(self.store_outputs, outputs)
        status = "succeeded" if final == "execution_success" else "failed"
        failure = {"code": "node_error" if final == "execution_error" else "interrupted", **(err or {})}
        return self.result(execution_id, status, files, None if status == "succeeded" else failure, t0, t_start)

    @staticmethod
    def result(execution_id, status, outputs, err, t0, t_start) -> dict:
        now = time.monotonic()
        body = {"execution_id": execution_id, "status": status, "outputs": outputs,
                "timings": {"queued_ms": round((t_start - t0) * 1000, 1), "run_ms": round((now - t_start) * 1000, 1)}}
        if err:
            body["error"] = err
        return body

    def store_outputs(self, outputs: dict) -> dict:
        """Every ui key's files (images, gifs, video, audio, 3D, ...) go to the store by content."""
        store = self.materialiser.store
        out: dict = {}
        for node_id, ui in outputs.items():
            node_out = out[node_id] = {}
            for key, items in (ui or {}).items():
                if not isinstance(items, list):
                    node_out[key] = items
                    continue
                node_out[key] = [self.store_file(store, item) if is_file_item(item) else item for item in items]
        return out

    def store_file(self, store, item: dict) -> dict:
        folder = {"output": "output", "temp": "temp", "input": "input"}.get(item.get("type", "output"), "output")
        sub = item.get("subfolder") or ""
        path: Path = self.s.base_dir / folder / (safe_relative(sub) if sub else "") / safe_relative(item["filename"])
        digest = file_sha256(path)
        if not store.has_blob(digest, path.stat().st_size):
            store.put_blob(digest, str(path))
        return {**item, "sha256": digest, "size": path.stat().st_size}


class AsyncProgress:
    """Coarse progress of a non-streamed run (SageMaker async), written to the store for the caller to
    relay at most every `interval` seconds: {"events": the run's events so far, "preview": the latest
    sampler preview, with a sequence number the caller compares}."""

    RELAYED = ("execution_start", "execution_cached", "executing", "progress_state", "execution_success",
               "execution_error", "execution_interrupted")

    def __init__(self, store, execution_id: str, interval: float = 1.0):
        self.store, self.key, self.interval = store, f"async/progress/{execution_id}.json", interval
        self.events: list[dict] = []
        self.preview: dict | None = None
        self.previews = 0
        self.last = 0.0

    async def add(self, event: dict) -> None:
        if event.get("type") == PREVIEW_EVENT:
            self.preview, self.previews = event, self.previews + 1
        elif event.get("type") in self.RELAYED:
            self.events.append(event)
        else:
            return
        if time.monotonic() - self.last >= self.interval:
            await self.flush()

    async def flush(self) -> None:
        self.last = time.monotonic()
        body = {"events": self.events, "preview": self.preview, "preview_seq": self.previews}
        try:
            await asyncio.to_thread(self.store.put, self.key, json.dumps(body).encode())
        except Exception as err:  # progress is a courtesy: never fail the run for it
            log.warning("cannot write progress: %s", err)


def is_file_item(item: object) -> bool:
    return isinstance(item, dict) and isinstance(item.get("filename"), str)


def describe_rejection(body: dict) -> str:
    err = body.get("error") if isinstance(body.get("error"), dict) else {}
    parts = [err.get("message", "ComfyUI refused the prompt")]
    for node_id, node_err in (body.get("node_errors") or {}).items():
        msgs = "; ".join(e.get("details") or e.get("message", "") for e in node_err.get("errors", []))
        parts.append(f"node {node_id} ({node_err.get('class_type')}): {msgs}")
    return " | ".join(p for p in parts if p)


@web.middleware
async def json_errors(request: web.Request, handler) -> web.StreamResponse:
    """No traceback ever reaches a caller: unexpected failures are JSON 500s (details in the log)."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as err:
        log.exception("%s %s failed", request.method, request.path)
        return error(500, "worker_error", f"{type(err).__name__}: {err}")


def guard(settings: WorkerSettings):
    @web.middleware
    async def check(request: web.Request, handler) -> web.StreamResponse:
        if request.path != "/ping":
            if "Origin" in request.headers:
                return error(403, "forbidden", "the worker takes no requests from browser pages")
            sent = request.headers.get(TOKEN_HEADER, "")
            if settings.token and not hmac.compare_digest(sent.encode(), settings.token.encode()):
                return error(403, "forbidden", f"missing or wrong {TOKEN_HEADER} header")
        return await handler(request)

    return check


def build_app(worker: Worker) -> web.Application:
    app = web.Application(client_max_size=worker.s.max_body_bytes, middlewares=[guard(worker.s), json_errors])
    app.router.add_get("/ping", worker.ping)
    app.router.add_get("/status", worker.status)
    app.router.add_post("/invocations", worker.invocations)

    async def on_startup(app: web.Application) -> None:
        worker.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        app["prepare"] = asyncio.create_task(worker.prepare())

    async def on_cleanup(app: web.Application) -> None:
        if worker.comfy:
            await asyncio.to_thread(worker.comfy.stop)
        await worker.session.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def serve(settings: WorkerSettings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    worker = Worker(settings)
    web.run_app(build_app(worker), host=settings.host, port=settings.port, print=None, handle_signals=True)
    if worker.state == "failed":
        raise SystemExit(f"worker failed: {worker.reason}")
