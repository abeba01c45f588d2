"""A run's invocation: sent to its endpoint in the service's pool, its events relayed (ComfyUI's own, previews,
notes, how to follow it again), its outputs and its end concluded in the record."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from typing import Any

from . import cancel_tokens
from .endpoints import EndpointNotFound, EndpointNotReady, InvocationFailed
from .errors import ExecutionCorrupt, SageMakerError
from .execution_base import SETTLE_S
from .execution_cancels import ExecutionCancels
from .execution_outputs import OutputInvalid
from .execution_pages import page_error
from .execution_records import FINAL
from .records import ExecutionError, ExecutionRecord, ExecutionState
from .store import KeyNotFound
from .templates import now
from .worker_contract import PROTOCOL_VERSION, RESTARTED, Invocation, WorkerEvent, WorkerResult

PREVIEW = "sagemaker.preview"  # a sampler preview from the worker (worker/comfy.py)
RESUMABLE = "sagemaker.resumable"  # from an endpoint (aws/runtime.py): {resume: what Endpoints.resume needs}
MAX_PREVIEW_BYTES = 4 * 1024 * 1024
RELAYED = ("execution_start", "execution_cached", "executing", "progress", "progress_state", "executed",
           "execution_success", "execution_error", "execution_interrupted")


def endpoint_of(record: ExecutionRecord) -> str:
    """The endpoint a run was sent to; EndpointNotFound (the run fails saying so) for a record that names none."""
    name = record.get("endpoint")
    if not name:
        raise EndpointNotFound(f"execution {record['id']} names no endpoint")
    return name


class ExecutionInvocations(ExecutionCancels):
    """A run sent to its endpoint and followed to its end: its events relayed to the page that queued it and to
    listeners, its outputs copied here, its end written."""

    def _relay(self, record: ExecutionRecord, event: WorkerEvent) -> None:
        kind = event.get("type")
        if kind == "sagemaker.note":  # a remark on the run (e.g. waiting for an instance), shown in the list
            self._update(record, note=(event.get("data") or {}).get("message"))
            return
        if kind == RESUMABLE:  # the endpoint accepted it and can answer for it to another follower: how
            resume = (event.get("data") or {}).get("resume")
            if isinstance(resume, dict) and record["state"] not in FINAL:
                self._keep_resume(record, resume)
            return
        if kind == PREVIEW and record["state"] not in FINAL:
            self._preview(record, event.get("data") or {})
            return
        if kind not in RELAYED or record["state"] in FINAL:
            return
        data = dict(event.get("data") or {})
        data["prompt_id"] = record["prompt_id"]
        if kind == "executed" and isinstance(data.get("output"), dict):
            data["output"] = self.outputs.localise(record["id"], data["output"])  # OutputInvalid ends the invocation
            self._seen(record)["shown"].add(str(data.get("node")))
        if kind in ("execution_success", "execution_error", "execution_interrupted"):
            self._seen(record)["ended"] = True
        self._to_page(record, kind, data)

    def _preview(self, record: ExecutionRecord, data: dict[str, Any]) -> None:
        """A sampler preview, as bytes, to the page that queued the run (the ComfyUI face sends it as
        ComfyUI's own binary preview frame); a malformed one is dropped."""
        image_type = data.get("image_type")
        if image_type not in ("image/jpeg", "image/png") or not isinstance(data.get("image"), str):
            return
        try:
            image = base64.b64decode(data["image"], validate=True)
        except ValueError:
            return
        if len(image) > MAX_PREVIEW_BYTES:
            return
        node = data.get("node_id")
        self._to_page(record, PREVIEW, {"prompt_id": record["prompt_id"], "image_type": image_type, "image": image,
                                        "node_id": node if isinstance(node, str) else None})

    def _seen(self, record: ExecutionRecord) -> dict:
        """What this run already showed the page (kept beside the record, never stored)."""
        with self._lock:
            return self._relayed.setdefault(record["id"], {"shown": set(), "ended": False})

    def _finish_events(self, record: ExecutionRecord, outputs: dict) -> None:
        """An async run relays coarse progress only: show the outputs and the end the page did not see."""
        seen = self._seen(record)
        shown = seen["shown"]
        for node, ui in outputs.items():
            if str(node) not in shown:
                self._to_page(record, "executed", {"node": node, "display_node": node, "output": ui,
                                                   "prompt_id": record["prompt_id"]})
        if not seen["ended"]:
            self._to_page(record, "execution_success",
                          {"prompt_id": record["prompt_id"], "timestamp": int(time.time() * 1000)})

    def _invoke(self, record: ExecutionRecord, prompt: dict, deferred: bool = False) -> None:
        if record["state"] in FINAL:
            self._finished(record)
            return
        token = cancel_tokens.new_token()
        with self._lock:  # before "running": a cancel that sees it running has the token to send
            self._cancel_tokens[record["id"]] = token
        with self._lock:  # before "running": what the run says in its first second is kept for _settle
            settle = threading.Timer(SETTLE_S, self._settle, (record,))
            settle.daemon = True
            self._settling[record["id"]] = settle
        # An async run's "running" is stored with its first second (or its end): nothing reads it before, and a
        # short run (a queue worked through) is created and ended in two writes. Other runs say it at once: their
        # follower's death says "lost with the connection" (a stream) rather than "never reached its endpoint".
        self._update(record, state="running", started_at=now(), stored=not deferred)
        settle.start()
        body: Invocation = {"protocol_version": PROTOCOL_VERSION, "execution_id": record["id"], "prompt": prompt,
                            "inputs": record["inputs"], cancel_tokens.DIGEST_FIELD: cancel_tokens.digest_of(token)}
        self._follow(record, lambda: self.endpoints.invoke(endpoint_of(record), body, lambda e: self._relay(record, e)))

    def _follow(self, record: ExecutionRecord, answer: Callable[[], WorkerResult]) -> None:
        try:
            self._conclude(record, answer)
        finally:
            # Its end is written (or the store failed: then another process's sweep fails it, core/followers.py).
            self._finished(record)

    def _conclude(self, record: ExecutionRecord, answer: Callable[[], WorkerResult]) -> None:
        result: WorkerResult
        try:
            result = answer()
        except (InvocationFailed, EndpointNotReady, SageMakerError) as err:
            result = {"status": "failed", "outputs": {}, "error": {"code": err.code, "message": err.message}}
        except Exception as err:  # never leave a run stuck in "running"
            result = {"status": "failed", "outputs": {}, "error": {"code": "internal_error", "message": str(err)}}
        try:
            outputs = self.outputs.all(record["id"], result.get("outputs"))
        except OutputInvalid as err:
            outputs, result = {}, {"status": "failed", "outputs": {},
                                   "error": {"code": err.code, "message": err.message}}
        except (KeyNotFound, OSError, SageMakerError) as err:
            outputs, result = {}, {"status": "failed", "outputs": {},
                                   "error": {"code": "outputs_missing", "message": str(err)}}
        status: ExecutionState = "succeeded" if result["status"] == "succeeded" else "failed"
        error = result.get("error")
        if status == "succeeded" and record["state"] not in FINAL:
            self._finish_events(record, outputs)
        if status == "failed" and record["state"] not in FINAL:
            self._ended_elsewhere(record)  # a designer's cancel or Stop broke the run: their end stands
        if status == "failed" and record["state"] not in FINAL:
            if not error or error.get("code") not in ("node_error", "interrupted"):
                # The worker never said why in ComfyUI's words: tell the page, so it stops "running".
                self._to_page(record, "execution_error", page_error(record["prompt_id"], error))
        with self._lock:
            self._relayed.pop(record["id"], None)
        self._restarted(record, error)
        self._update(record, state=status, finished_at=now(), outputs=outputs, error=error,
                     timings=result.get("timings"))

    def _restarted(self, record: ExecutionRecord, error: ExecutionError | None) -> None:
        """A cancelled run's worker restarted its ComfyUI to stop it (a node that ignores interrupts): the record
        says so after who cancelled it, "cancelled by Ann (ComfyUI restarted to stop node X)"."""
        if error is None or record["state"] != "cancelled" or error.get("code") != "cancelled":
            return
        message, ended = str(error.get("message") or ""), record.get("error")
        if not ended or not message.startswith(f"cancelled ({RESTARTED}") or RESTARTED in str(ended.get("message")):
            return
        why = message.removeprefix("cancelled ")  # "(ComfyUI restarted to stop node X)"
        self._update(record, state="cancelled",
                     error={**ended, "message": f"{ended.get('message') or 'cancelled'} {why}"})

    def _ended_elsewhere(self, record: ExecutionRecord) -> None:
        """Take the stored end of a run someone ended through the store (a cancel, a Stop) before this process's
        watch saw it: the failure it caused is not told to the page as ComfyUI's error."""
        try:
            got = self.records.read(record["id"])
        except (ExecutionCorrupt, KeyNotFound, OSError, SageMakerError):
            return
        if got is None or got[0].get("state") not in FINAL:
            return
        stored, etag = got
        with self._lock:
            record.update({"state": stored["state"], "finished_at": stored.get("finished_at"),
                           "error": stored.get("error")})
            self._etags[record["id"]] = etag
        self._stop(record, was_running=False)  # as the watch does: the page's canvas stops, interrupted
        self.send("sagemaker.execution", self.summary(record), None)

    def _finished(self, record: ExecutionRecord) -> None:
        with self._lock:
            self._live.pop(record["id"], None)
            self._etags.pop(record["id"], None)
            self._cancel_tokens.pop(record["id"], None)
            timer = self._settling.pop(record["id"], None)
            self._resumes.pop(record["id"], None)
            self._unstored.discard(record["id"])
        if timer is not None:
            timer.cancel()
        self.follower.drop()
