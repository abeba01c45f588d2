"""SageMaker's container contract in front of the worker's headless ComfyUIs (one per GPU).

- `GET /ping`: 200 when the environment is materialised, at least one ComfyUI answers and, when the manifest
  names a warm-up (worker/warmup.py), every ComfyUI's first start has ended with it (warmed, or failed); else
  503. Answered from state (never waits on a prompt or the warm-up), so it stays fast while either runs:
  SageMaker's health check expects a quick answer and counts non-200 as not ready yet
  (https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html#your-algorithms-inference-algo-ping-requests).
- `POST /invocations` `{protocol_version, execution_id, prompt, inputs: {filename: sha256}, cancel_sha256}`
  (core/worker_contract.py declares the wire and its version): runs one prompt
  on a free ComfyUI (as many at once as there are ComfyUIs; the rest queue in arrival order); outputs go
  to the store. On a real-time endpoint the time limit counts from arrival, queue included
  (WORKER_DEADLINE_FROM_ARRIVAL), and a prompt whose caller hung up while it was queued is not started.
  With `Accept: application/x-ndjson` the response streams ComfyUI's events, one JSON
  object a line, ending with `{"type": "result", "data": <result>}`. `{"action": "cancel", "execution_id",
  "cancel_token"}` cancels a queued or running execution, on whichever ComfyUI runs it, if the token is
  the one whose sha256 its invocation carried (worker/cancels.py): only the execution's invoker can. A
  running one whose ComfyUI has not stopped it within WORKER_CANCEL_GRACE_S (10 s) gets that ComfyUI
  restarted, and ends "cancelled (ComfyUI restarted to stop node X)".
  `{"action": "result", "execution_id", "cancel_token"?}` answers a run's result, waiting while it is queued or
  running, where the worker keeps results (worker/results.py: local endpoints, for a caller that went away);
  such a worker runs a prompt on when its caller hangs up, and streams nothing more to it.
- `GET /status`: state, reason, each ComfyUI's state (`comfyuis`, with the execution it is busy with), the
  queue, the cold start's phases (`phases`) and what the worker does now (`activity`), what materialisation
  downloaded, how many runs and early cancels the cancel book holds (`cancels`).

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

from ..core.cancel_tokens import DIGEST_FIELD, TOKEN_FIELD, is_digest, is_token
from ..core.shapes import ShapeInvalid, validate
from ..core.worker_contract import (
    KEEPS_HEADER,
    TOKEN_HEADER,
    CancelRequest,
    Invocation,
    ProtocolUnsupported,
    ResultRequest,
    WorkerEvent,
    speaks,
)
from .access_log import QuietPollsAccessLogger
from .cancels import MAX_ID
from .coldstart import now_iso
from .materialise import MaterialiseError, safe_relative
from .outputs import AsyncProgress, keep_result, store_outputs
from .pool import Slot
from .runs import OUTPUT_ERRORS, WorkerRuns
from .settings import WorkerSettings

log = logging.getLogger("comfyui_sagemaker.worker")
NDJSON = "application/x-ndjson"


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class Worker(WorkerRuns):
    """The worker (its state and start-up: worker/lifecycle.py; its runs: worker/runs.py) and its routes."""

    # routes

    async def ping(self, request: web.Request) -> web.Response:
        if self.state != "ready" or self.pool is None or not self.pool.healthy():
            return web.Response(status=503, text=self.reason or self.state)
        return web.Response(status=200, text="ok")

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response({
            **self.report_body(), "queue": self.pool.queued() if self.pool else [], "cancels": self.cancels.size(),
            "materialise": self.materialiser.report.to_json(), "updated_at": now_iso(),
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
        arrived = time.monotonic()
        if self.state != "ready" and not self.results.keeps:
            return error(503, "not_ready", f"worker is {self.state}: {self.reason or 'materialising'}")
        try:
            body = await self.read_request(request)
        except web.HTTPRequestEntityTooLarge:
            return error(413, "payload_too_large", f"request body is over {self.s.max_body_bytes} bytes")
        except (ValueError, UnicodeDecodeError) as err:
            return error(400, "bad_request", f"request body is not JSON: {err}")
        if isinstance(body, dict) and body.get("action") == "result":  # what it knows, ready or not
            return await self.result_of(body)
        if self.state != "ready":
            return error(503, "not_ready", f"worker is {self.state}: {self.reason or 'materialising'}")
        if isinstance(body, dict) and body.get("action") == "cancel":
            return self.cancel(body)
        invocation = self.check(body)
        if isinstance(invocation, web.Response):
            return invocation
        execution_id = invocation.get("execution_id") or ""
        prompt = invocation["prompt"]
        try:
            inputs = await self.fetch_inputs(invocation.get("inputs") or {})
        except MaterialiseError as err:
            return error(400, "input_missing", str(err))
        if self.s.models == "lazy":
            await asyncio.to_thread(self.materialiser.models_for, prompt)

        stream = NDJSON in request.headers.get("Accept", "")
        response: web.StreamResponse | None = None
        if stream:
            headers = {"Content-Type": NDJSON}
            if self.results.keeps and execution_id:
                headers[KEEPS_HEADER] = str(round(self.results.ttl))
            response = web.StreamResponse(headers=headers)
            await response.prepare(request)
        gone: list[bool] = []  # the caller hung up: the run goes on, its result is kept (worker/results.py)

        async def write(line: bytes) -> None:
            if response is None or gone:
                return
            try:
                await response.write(line)
            except ConnectionError as err:  # aiohttp's "Cannot write to closing transport" among them
                gone.append(True)
                log.info("execution %s: its caller went away (%s); %s", execution_id or "-", err,
                         "it runs on, its result kept" if self.results.keeps else "it runs on")

        progress = AsyncProgress(self.materialiser.store, execution_id) if not stream and execution_id else None
        held: list[Slot] = []  # the ComfyUI running this execution, once it has one

        async def on_event(event: WorkerEvent) -> None:
            if progress is not None:
                await progress.add(event)
            if response is None:
                return
            data = event.get("data") or {}
            if event["type"] == "executed" and isinstance(data.get("output"), dict):
                # Store this node's files now, so the caller can show them before the run ends.
                try:
                    output = await asyncio.to_thread(store_outputs, self.materialiser.store, held[0].comfy,
                                                     {"n": data["output"]})
                except OUTPUT_ERRORS as err:  # the run's end says so (execute stores them all again)
                    log.warning("cannot store an output of %s: %s", execution_id, err)
                    return
                event = {**event, "data": {**data, "output": output["n"]}}
            await write(json.dumps(event).encode() + b"\n")

        deadline = arrived + self.s.invocation_timeout if self.s.deadline_from_arrival else None
        # A prompt whose caller hung up while it was queued is not started, unless its result is kept for it.
        caller_gone = (lambda: False) if self.results.keeps else \
            (lambda: request.transport is None or request.transport.is_closing())
        result = await self.execute(execution_id, prompt, inputs, on_event, held, invocation.get(DIGEST_FIELD),
                                    deadline, caller_gone)
        if progress is not None:
            await progress.flush()
        if response is None:
            failure = result.get("error")
            status = 400 if failure is not None and failure["code"] == "prompt_invalid" else 200
            if progress is not None and not await asyncio.to_thread(keep_result, self.materialiser.store,
                                                                    execution_id, result):
                return error(500, "result_taken", f"another result of execution {execution_id} is already in "
                             "the store; this run's is not given as its answer")
            return web.json_response(result, status=status)
        await write(json.dumps({"type": "result", "data": result}).encode() + b"\n")
        if not gone:
            try:
                await response.write_eof()
            except ConnectionError:
                pass
        return response

    def check(self, body: object) -> Invocation | web.Response:
        """The invocation, or the answer saying what is wrong with it."""
        usage = "body must be {execution_id, prompt: {...}, inputs: {name: sha256}}"
        try:
            invocation = validate(Invocation, body)
            speaks(invocation.get("protocol_version"), "the caller")
        except ProtocolUnsupported as err:
            return error(400, "protocol_unsupported", str(err))
        except ShapeInvalid as err:
            return error(400, "bad_request", f"{usage}: {err.reason}")
        if not invocation["prompt"]:
            return error(400, "bad_request", usage)
        if len(invocation.get("execution_id") or "") > MAX_ID:
            return error(400, "bad_request", f"execution_id must be a string of at most {MAX_ID} characters")
        digest = invocation.get(DIGEST_FIELD)
        if digest is not None and not is_digest(digest):
            return error(400, "bad_request", f"{DIGEST_FIELD} must be a lowercase hex sha256")
        types = {n.get("class_type") for n in invocation["prompt"].values() if isinstance(n, dict)}
        unknown = sorted(str(t) for t in types if t not in self.node_types)
        if unknown:
            env = self.materialiser.name
            return error(400, "unknown_node_type",
                         f"node type(s) {', '.join(unknown)} not in environment {env!r}: the environment "
                         "lacks them; publish a new version that includes their pack")
        return invocation

    async def fetch_inputs(self, inputs: dict[str, str]) -> list[tuple[Path, str, str]]:
        """Download (or find in the cache) each input by digest; names are checked here too."""
        out = []
        for name, sha in inputs.items():
            safe_relative(name)
            out.append((await asyncio.to_thread(self.materialiser.blob, sha), name, sha))
        return out

    def cancel(self, body: object) -> web.Response:
        """Cancel a queued or running execution (sent as an invocation: SageMaker has no other door), for
        its invoker only: the cancel's token must be the execution's."""
        try:
            request = validate(CancelRequest, body)
            speaks(request.get("protocol_version"), "the caller")
        except ProtocolUnsupported as err:
            return error(400, "protocol_unsupported", str(err))
        except ShapeInvalid as err:
            return error(400, "bad_request", f"a cancel is {{action, execution_id, {TOKEN_FIELD}}}: {err.reason}")
        execution_id, token = request.get("execution_id"), request.get(TOKEN_FIELD)
        if not isinstance(execution_id, str) or not 0 < len(execution_id) <= MAX_ID:
            return error(400, "bad_request", f"a cancel needs an execution_id of 1 to {MAX_ID} characters")
        if not is_token(token):
            return error(403, "cancel_refused", f"a cancel needs the run's {TOKEN_FIELD}: only its invoker may "
                         "cancel it")
        executions = self.cancels.cancel(execution_id, token)
        if executions is None:
            return web.json_response({"cancelled": False, "state": "unknown", "message": f"no execution "
                                      f"{execution_id} here; the cancel holds {self.cancels.early_ttl:.0f} s for it"})
        if not executions:
            return error(403, "cancel_refused", f"wrong {TOKEN_FIELD} for execution {execution_id} (or it was "
                         "invoked without one): only its invoker may cancel it")
        answer: dict = {}
        for execution in executions:
            answer = self._stop(execution)
        return web.json_response(answer)

    async def result_of(self, body: object) -> web.Response:
        """A run's result for a caller that went away (worker/results.py), waited for while the run goes on."""
        if not self.results.keeps:
            return error(404, "run_unknown", "this worker keeps no results: a run is answered only to its invoker's "
                         "connection")
        try:
            request = validate(ResultRequest, body)
            speaks(request.get("protocol_version"), "the caller")
        except ProtocolUnsupported as err:
            return error(400, "protocol_unsupported", str(err))
        except ShapeInvalid as err:
            return error(400, "bad_request", f"a result request is {{action, execution_id, {TOKEN_FIELD}?}}: "
                         f"{err.reason}")
        execution_id, token = request.get("execution_id"), request.get(TOKEN_FIELD)
        if not isinstance(execution_id, str) or not 0 < len(execution_id) <= MAX_ID:
            return error(400, "bad_request", f"a result request needs an execution_id of 1 to {MAX_ID} characters")
        if token is not None and not is_token(token):
            return error(400, "bad_request", f"{TOKEN_FIELD} must be the run's cancel token")
        if not self.results.known(execution_id):
            return error(404, "run_unknown", f"this worker has no run {execution_id}: it never ran here, the worker "
                         f"was restarted since, or its result was kept past {self.results.ttl / 60:.0f} minutes "
                         f"or {self.results.size} runs")
        if not self.results.allowed(execution_id, token, bool(self.s.token)):
            return error(403, "result_refused", f"only the invoker of execution {execution_id} (its "
                         f"{TOKEN_FIELD}) or the worker's own process may read its result")
        result = await self.results.wait(execution_id)
        if result is None:  # kept past its limit while waited for: cannot happen while it runs
            return error(404, "run_unknown", f"this worker no longer has execution {execution_id}'s result")
        return web.json_response(result)


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
        if worker.pool:
            await worker.pool.stop()
        if worker.report is not None:
            await asyncio.to_thread(worker.report.close)
        if worker.session is not None:
            await worker.session.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def serve(settings: WorkerSettings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    worker = Worker(settings)
    web.run_app(build_app(worker), host=settings.host, port=settings.port, print=None, handle_signals=True,
                access_log_class=QuietPollsAccessLogger)
    if worker.state == "failed":
        raise SystemExit(f"worker failed: {worker.reason}")
