"""A worker's runs: a prompt on a free ComfyUI, within its time limit, queued in arrival order; a cancel stops it
where it is (queued, or running on its ComfyUI: worker/cancels.py), asked by its invoker or by a marker in the
store; and the result each run ends with."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal

import aiohttp

from ..core.errors import SageMakerError, message_of
from ..core.executions import ID_RE
from ..core.records import ExecutionError
from ..core.worker_contract import (
    PROTOCOL_VERSION,
    WorkerEvent,
    WorkerResult,
)
from .cancels import Execution, marked, stop_running
from .coldstart import FirstPromptTimer
from .comfy import PromptRejected
from .lifecycle import WorkerLifecycle
from .materialise import MaterialiseError, place_input
from .outputs import describe_rejection, store_outputs
from .pool import NoComfyUI, QueuedCancelled, Slot

log = logging.getLogger("comfyui_sagemaker.worker")
# An output file that is missing, unsafely named, or not a regular file (a FIFO would hang the read).
OUTPUT_ERRORS = (OSError, SageMakerError, MaterialiseError)


class WorkerRuns(WorkerLifecycle):
    """The worker's runs and their cancels (the routes that take them: worker/server.py)."""

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
