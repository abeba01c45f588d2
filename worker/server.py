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
import dataclasses
import hmac
import json
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal, cast

import aiohttp
from aiohttp import web

from ..core.cancel_tokens import DIGEST_FIELD, TOKEN_FIELD, is_digest, is_token
from ..core.errors import SageMakerError, message_of
from ..core.executions import ID_RE
from ..core.idle_stop import Idleness, stamp
from ..core.idle_stop import minutes as idle_minutes
from ..core.records import EndpointConfig, ExecutionError
from ..core.shapes import ShapeInvalid, validate
from ..core.worker_contract import (
    KEEPS_HEADER,
    PROTOCOL_VERSION,
    TOKEN_HEADER,
    CancelRequest,
    Invocation,
    ProtocolUnsupported,
    ResultRequest,
    WorkerEvent,
    WorkerReport,
    WorkerResult,
    WorkerState,
    speaks,
)
from .access_log import QuietPollsAccessLogger
from .cancels import MAX_ID, CancelBook, Execution, marked, stop_running
from .coldstart import ColdStart, FirstPromptTimer, StoreReport, human_bytes, now_iso, report_key
from .comfy import ComfyProcess, PromptRejected
from .devices import Device, DevicesInvalid, plan
from .materialise import EXTENSION_FOLDER, MaterialiseError, Materialiser, place_input, safe_relative
from .outputs import AsyncProgress, describe_rejection, keep_result, store_outputs
from .pool import ComfyPool, NoComfyUI, QueuedCancelled, Slot
from .results import ResultBook
from .settings import WorkerSettings
from .volumes import candidates_from, place
from .warmup import Warmup, warm

log = logging.getLogger("comfyui_sagemaker.worker")
NDJSON = "application/x-ndjson"
# An output file that is missing, unsafely named, or not a regular file (a FIFO would hang the read).
OUTPUT_ERRORS = (OSError, SageMakerError, MaterialiseError)


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class Worker:
    def __init__(self, settings: WorkerSettings):
        # The caches go to the largest local volume (worker/volumes.py): on SageMaker, the instance's storage.
        self.placement = place(settings.cache_dir, settings.base_dir,
                               candidates_from(settings.local_volumes, settings.cache_dir))
        if self.placement is not None:
            settings = dataclasses.replace(settings, cache_dir=self.placement.cache_dir,
                                           base_dir=self.placement.base_dir)
            log.info("caches on %s (%s free)", self.placement.volume.candidate,
                     human_bytes(self.placement.volume.free_bytes))
        self.s = settings
        self.state: WorkerState = "starting"
        self.reason: str | None = None
        self.coldstart = ColdStart()
        self.materialiser = Materialiser(settings.manifest_uri, settings.cache_dir, settings.base_dir, self.coldstart,
                                         settings.fetch_part_bytes, settings.fetch_concurrency, self.placement)
        self.pool: ComfyPool | None = None
        self.warmup: Warmup | None = None
        self.node_types: set[str] = set()
        self.session: aiohttp.ClientSession | None = None
        self.started = time.monotonic()
        self.ready_after: float | None = None
        self.cancels = CancelBook(early_ttl=settings.cancel_hold)
        self.stopping: set[asyncio.Task] = set()  # cancelled runs being stopped (held: the loop keeps weak refs)
        self.results = ResultBook(settings.keep_results, settings.keep_minutes)
        self.idleness = Idleness()  # the idle stop's clock (core/idle_stop.py)
        self.idle_task: asyncio.Task | None = None  # a SageMaker worker's idle stop (worker/idle_stop.py)
        self.report: StoreReport | None = None
        if settings.report_to_store:
            key = report_key(self.materialiser.environment, self.coldstart.started_epoch, StoreReport.instance_name())
            self.report = StoreReport(self.materialiser.store, key, self.report_body).start()
            self.coldstart.on_change = self.report.poke

    def http(self) -> aiohttp.ClientSession:
        """The session to this worker's ComfyUIs (made at start-up, before any request is served)."""
        if self.session is None:
            raise RuntimeError("the worker has not started")
        return self.session

    # start-up

    def link_extension(self) -> None:
        if not self.s.extension_dir:
            return
        link = self.s.base_dir / "custom_nodes" / EXTENSION_FOLDER
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists() and not link.is_symlink():
            link.symlink_to(self.s.extension_dir, target_is_directory=True)

    def comfy_process(self, i: int, device: Device, count: int, layers: list[str]) -> ComfyProcess:
        # One ComfyUI keeps the log name it always had; more get one log each.
        log_path = self.s.base_dir / ("comfyui.log" if i == 0 else f"comfyui-{i}.log")
        return ComfyProcess(self.s.comfyui_dir, self.s.base_dir, device.args(self.s.comfyui_args), layers, log_path,
                            self.s.preview_method, slot_dir=self.s.base_dir / "comfyui" / str(i), env=device.env(),
                            label=str(i) if count > 1 else "")

    def make_pool(self, layers: list[str]) -> ComfyPool:
        devices = plan(self.s.device_environ(), self.s.comfyui_args)
        slots = [Slot(i, device, self.comfy_process(i, device, len(devices), layers))
                 for i, device in enumerate(devices)]
        log.info("%s: %s", comfyuis(len(slots)), ", ".join(d.label for d in devices))
        return ComfyPool(slots, self.coldstart, self.pool_changed, self.s.restart_backoff,
                         self.warm_slot if self.warmup is not None else None)

    async def warm_slot(self, slot: Slot, report: bool) -> None:
        if self.warmup is not None:
            await warm(slot, self.http(), self.warmup, self.coldstart if report else None)

    def load_warmup(self) -> Warmup | None:
        """The manifest's warm-up with its inputs fetched; None if it has none or they cannot be fetched (a
        failed phase says so: the worker starts unwarmed rather than not at all). Blocking."""
        entry = self.materialiser.manifest.get("warmup")
        warmup = Warmup.of(entry, self.s.warmup_timeout)
        if warmup is None or entry is None:
            return None
        inputs = entry.get("inputs") or {}
        if not inputs and self.s.models != "lazy":
            return warmup
        try:
            with self.coldstart.phase("warmup_inputs", "warm-up inputs", count=len(inputs)):
                for name, sha in inputs.items():
                    safe_relative(name)
                    warmup.inputs.append((self.materialiser.blob(sha), name, sha))
                if self.s.models == "lazy":
                    self.materialiser.models_for(warmup.prompt)
        except (MaterialiseError, SageMakerError, OSError) as err:
            log.warning("no warm-up: %s", message_of(err))
            return None
        return warmup

    async def prepare(self) -> None:
        try:
            layers = await asyncio.to_thread(self.materialiser.run, self.s.models, self.s.install_packages)
            self.link_extension()
            self.warmup = await asyncio.to_thread(self.load_warmup)
            self.pool = self.make_pool(layers)
            self.coldstart.set_activity(f"starting {comfyuis(len(self.pool.slots))}")
            first = await self.pool.start(self.http())
            self.node_types = await first.comfy.node_types(self.http())
            if self.warmup is not None:
                await self.pool.settled()  # each ComfyUI warmed (or failed) before /ping says ready
            self.state = "ready"
            self.ready_after = time.monotonic() - self.started
            self.idleness.end()  # idle from now: a materialisation is not idleness
            self.start_idle_stop()
            self.pool_changed()
            log.info("worker ready in %.1f s (ComfyUI %d first; %d in all)", self.ready_after, first.index,
                     len(self.pool.slots))
        except (MaterialiseError, SageMakerError, RuntimeError, OSError, aiohttp.ClientError, NoComfyUI,
                DevicesInvalid) as err:
            self.fail(message_of(err))
        except Exception as err:  # whatever it is, the start ends with a reason the endpoint shows
            log.exception("materialisation failed")
            self.fail(f"{type(err).__name__}: {err}")

    def start_idle_stop(self) -> None:
        """On SageMaker (its report goes to the store: nothing of the extension's runs beside it), the worker
        stops its endpoint once idle for the config's idle_stop_minutes (worker/idle_stop.py)."""
        if not self.s.report_to_store or self.materialiser.store.kind != "s3":
            return
        try:
            limit = idle_minutes(cast(EndpointConfig, self.materialiser.endpoint))
        except (KeyError, TypeError, AttributeError) as err:  # a manifest written by hand: never fail the start
            log.warning("idle stop off: the manifest's endpoint config cannot be read (%s)", err)
            return
        if limit == 0:
            return
        from .idle_stop import for_sagemaker

        store_uri = self.s.manifest_uri.split("/environments/", 1)[0]
        mode = str((self.materialiser.endpoint or {}).get("mode") or "async")
        idle = for_sagemaker(self.idleness, limit, self.materialiser.store, store_uri,
                             self.materialiser.name or self.materialiser.environment, mode)
        self.idle_task = asyncio.get_running_loop().create_task(idle.run())

    def pool_changed(self) -> None:
        """A ComfyUI changed state: the activity line, the store report, and a worker left without any."""
        pool = self.pool
        if pool is None:
            return
        ready = sum(1 for s in pool.slots if s.state in ("ready", "busy"))
        starting = sum(1 for s in pool.slots if s.state in ("starting", "restarting"))
        warming = sum(1 for s in pool.slots if s.state == "warming")
        self.coldstart.set_activity(f"warm-up prompt on {warming} of {len(pool.slots)} ComfyUIs" if warming else
                                    f"{ready} of {len(pool.slots)} ComfyUIs ready" if starting else None)
        if self.report is not None:
            self.report.poke(urgent=True)
        if self.state == "ready" and pool.failed():
            self.fail("every ComfyUI of this worker failed: " + "; ".join(s.reason or "" for s in pool.slots))

    def fail(self, reason: str) -> None:
        self.state, self.reason = "failed", reason
        log.error("worker failed: %s", reason)
        self.coldstart.set_activity(None)
        if self.report is not None:
            self.report.poke(urgent=True)
        if self.s.exit_after_failure >= 0:
            log.info("exiting in %.0f s", self.s.exit_after_failure)
            asyncio.get_running_loop().call_later(self.s.exit_after_failure, self.exit_failed)

    @staticmethod
    def exit_failed() -> None:
        # aiohttp's run_app stops on SIGINT; the container (or local endpoint) then sees the exit code.
        os.kill(os.getpid(), signal.SIGINT)

    # what the worker says about itself

    def report_body(self) -> WorkerReport:
        """The cold start report, the same in /status and in the store."""
        pool = self.pool
        body: WorkerReport = {
            "protocol_version": PROTOCOL_VERSION, "state": self.state, "reason": self.reason,
            "ready_after_s": self.ready_after,
            "environment": {"name": self.materialiser.name or self.materialiser.environment,
                            "version": self.materialiser.version},
            "instance": StoreReport.instance_name(), "started_at": self.coldstart.started_at,
            "phases": self.coldstart.to_json(), "activity": self.coldstart.activity,
            "comfyuis": pool.status() if pool else [],
            "idle_since": stamp(self.idleness.since()),
        }
        if self.materialiser.disk is not None:
            body["disk"] = self.materialiser.disk
        return body

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

    def _stop(self, execution: Execution) -> dict:
        slot = execution.slot
        if isinstance(slot, Slot) and self.pool is not None:
            task = asyncio.get_running_loop().create_task(stop_running(self.http(), self.pool, slot, execution,
                                                                       self.s.cancel_grace))
            self.stopping.add(task)
            task.add_done_callback(self.stopping.discard)
            return {"cancelled": True, "state": "running", "comfyui": slot.index}
        if self.pool is not None:
            self.pool.cancel_waiting(execution.execution_id, key=execution)
        return {"cancelled": True, "state": "queued"}

    async def _marked(self, execution: Execution) -> bool:
        """Whether the store holds a cancel marker with the execution's token (worker/cancels.py)."""
        return await asyncio.to_thread(marked, self.materialiser.store, execution)

    async def _watch_cancel(self, execution: Execution) -> None:
        while not execution.ended:
            await asyncio.sleep(self.s.cancel_poll)
            if not execution.ended and await self._marked(execution):
                execution.cancelled = True
                self._stop(execution)
                return

    async def execute(self, execution_id: str, prompt: dict, inputs: list[tuple[Path, str, str]],
                      on_event: Callable[[WorkerEvent], Awaitable[None]], held: list[Slot] | None = None,
                      cancel_digest: str | None = None, deadline: float | None = None,
                      caller_gone: Callable[[], bool] = lambda: False) -> WorkerResult:
        """Run the prompt on a free ComfyUI. `deadline` (monotonic): past it the prompt is not started, or is
        interrupted; `caller_gone`: the caller hung up while it was queued, so it is not started."""
        execution = self.cancels.begin(execution_id, cancel_digest)  # forgotten when the execution ends
        self.results.begin(execution_id, execution.digest)
        self.idleness.begin()  # a run, queued or running, is not idleness (core/idle_stop.py)
        result: WorkerResult | None = None
        try:
            result = await self._execute(execution, prompt, inputs, on_event, held, deadline, caller_gone)
            return result
        finally:
            self.idleness.end()
            self.cancels.end(execution)
            self.results.end(execution_id, execution.digest, result or self.result(
                execution_id, "failed", {}, {"code": "worker_error", "message": "the run broke off in the worker"},
                time.monotonic(), time.monotonic()))

    async def _execute(self, execution: Execution, prompt: dict, inputs: list[tuple[Path, str, str]],
                       on_event: Callable[[WorkerEvent], Awaitable[None]], held: list[Slot] | None,
                       deadline: float | None = None, caller_gone: Callable[[], bool] = lambda: False) -> WorkerResult:
        t0 = time.monotonic()
        execution_id = execution.execution_id
        cancelled: ExecutionError = {"code": "cancelled", "message": "cancelled"}
        if execution.cancelled:
            return self.result(execution_id, "failed", {}, cancelled, t0, t0)
        pool = self.pool
        if pool is None:  # served only once ready, when the pool exists
            return self.result(execution_id, "failed", {}, {"code": "worker_error", "message": "not ready"}, t0, t0)
        timeout = self.s.invocation_timeout
        try:
            # acquire leaves the queue when wait_for cancels it (worker/pool.py)
            slot = await asyncio.wait_for(pool.acquire(execution_id, key=execution),
                                          None if deadline is None else max(0.0, deadline - time.monotonic()))
        except QueuedCancelled:
            return self.result(execution_id, "failed", {}, cancelled, t0, time.monotonic())
        except asyncio.TimeoutError:
            return self.result(execution_id, "failed", {}, {"code": "timeout", "message": f"queued for {timeout:.0f} s"
                               " behind other prompts: the caller's time was up before it could start"}, t0,
                               time.monotonic())
        except NoComfyUI as err:
            return self.result(execution_id, "failed", {}, {"code": "worker_error", "message": str(err)}, t0, t0)
        execution.slot = slot
        if held is not None:
            held.append(slot)
        t_start = time.monotonic()
        try:
            if caller_gone():  # a prompt nobody waits for any more does not take the GPU
                log.info("execution %s: its caller left while it was queued; not run", execution_id or "-")
                return self.result(execution_id, "failed", {}, {"code": "cancelled", "message": "the caller went "
                                   "away before the prompt started"}, t0, t_start, slot)
            if execution.cancelled or await self._marked(execution):
                return self.result(execution_id, "failed", {}, cancelled, t0, t_start, slot)
            if deadline is not None:
                timeout = min(timeout, max(0.0, deadline - time.monotonic()))
            watcher = asyncio.get_running_loop().create_task(self._watch_cancel(execution)) \
                if execution.digest and ID_RE.fullmatch(execution_id) else None
            for blob, name, sha in inputs:
                await asyncio.to_thread(place_input, blob, name, sha, slot.comfy.folder("input"))
            timer = FirstPromptTimer(prompt) if not slot.first_prompt_done else None

            async def relay(event: WorkerEvent) -> None:
                if event["type"] == "executing":  # which node a restart to stop it names
                    node = prompt.get(str((event.get("data") or {}).get("node")))
                    execution.node = node.get("class_type") if isinstance(node, dict) else None
                if timer is not None:
                    timer.feed(event)
                await on_event(event)

            try:
                final, outputs, comfy_error = await asyncio.wait_for(
                    slot.comfy.run(self.http(), prompt, relay, slot.submitted), timeout)
            except asyncio.TimeoutError:
                await slot.comfy.interrupt(self.http(), slot.prompt_id)
                return self.result(execution_id, "failed", {}, {"code": "timeout", "message":
                                   f"the prompt ran over {self.s.invocation_timeout:.0f} s and was interrupted"}, t0,
                                   t_start, slot)
            except PromptRejected as rej:
                return self.result(execution_id, "failed", {}, {"code": "prompt_invalid", "message":
                                   describe_rejection(rej.body), "details": rej.body}, t0, t_start, slot)
            except (aiohttp.ClientError, RuntimeError) as e:
                if execution.restarted:  # its ComfyUI was restarted to stop it (worker/cancels.py)
                    return self.result(execution_id, "failed", {}, {"code": "cancelled", "message":
                                       execution.restarted}, t0, t_start, slot)
                died = await pool.death_of(slot)
                if died:
                    return self.result(execution_id, "failed", {}, {"code": "comfyui_died", "message":
                                       f"{died} while running this prompt; it is being restarted (the worker's other "
                                       "ComfyUIs go on serving)"}, t0, t_start, slot)
                return self.result(execution_id, "failed", {}, {"code": "worker_error", "message": str(e)}, t0,
                                   t_start, slot)
            finally:
                if watcher is not None:
                    watcher.cancel()
            if timer is not None and final == "execution_success":
                slot.first_prompt_done = True
                seconds, how = timer.finish()
                self.coldstart.record("first_prompt_model_load", "first prompt's model load", seconds,
                                      comfyui=slot.index, device=slot.device.label, detail=how)
        finally:
            execution.ended = True  # before its ComfyUI goes to another: no interrupt of this one reaches that
            pool.release(slot)
        try:
            files = await asyncio.to_thread(store_outputs, self.materialiser.store, slot.comfy, outputs)
        except OUTPUT_ERRORS as err:
            return self.result(execution_id, "failed", {}, {"code": "bad_output", "message": "an output could not "
                               f"be stored: {message_of(err)}"}, t0, t_start, slot)
        if final == "execution_success":
            return self.result(execution_id, "succeeded", files, None, t0, t_start, slot)
        failure: ExecutionError = {"code": "node_error" if final == "execution_error" else "interrupted",
                                   **(comfy_error or {})}
        return self.result(execution_id, "failed", files, failure, t0, t_start, slot)

    @staticmethod
    def result(execution_id: str, status: Literal["succeeded", "failed"], outputs: dict,
               err: ExecutionError | None, t0: float, t_start: float, slot: Slot | None = None) -> WorkerResult:
        now = time.monotonic()
        body: WorkerResult = {
            "protocol_version": PROTOCOL_VERSION, "execution_id": execution_id, "status": status, "outputs": outputs,
            "timings": {"queued_ms": round((t_start - t0) * 1000, 1), "run_ms": round((now - t_start) * 1000, 1)}}
        if slot is not None:
            body["comfyui"] = slot.index
        if err:
            body["error"] = err
        return body


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


def comfyuis(n: int) -> str:
    return f"{n} ComfyUI" + ("" if n == 1 else "s")


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
