"""Executions: prompts run on an endpoint, relayed to the browser that queued them.

`create` checks everything that can be checked before spending anything (a
template or environment chosen, the endpoint ready, the prompt's needs met by
the environment, its input files present), puts exactly the prompt's inputs
in the store by content, then runs the invocation in its own thread: never
ComfyUI's executor, so the local queue stays usable and many run at once.
ComfyUI's own events are relayed to that browser only (`sid`), with the
execution's prompt_id, and output files are copied under ComfyUI's
`output/sagemaker/<execution id>/` so `/view` serves them.

Records live in the store under `executions/<id>.json` (ids sort by time);
a run in flight when ComfyUI stops is marked failed at the next start.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from . import preflight
from .endpoints import EndpointNotFound, EndpointNotReady, Endpoints, InvocationFailed
from .errors import BadRequest, Conflict, NotFound, SageMakerError
from .hashing import HashCache, file_sha256
from .inputs import input_path, put_inputs
from .store import KeyNotFound, Store, blob_key
from .templates import TemplateService, now

PREFIX = "executions/"
FINAL = ("succeeded", "failed", "cancelled")
RELAYED = ("execution_start", "execution_cached", "executing", "progress", "progress_state", "executed",
           "execution_success", "execution_error", "execution_interrupted")
OUTPUT_SUBFOLDER = "sagemaker"


class ExecutionNotFound(NotFound):
    """No execution has this id."""

    code = "not_found"


class OutputInvalid(SageMakerError):
    """The endpoint answered with an output item that cannot be trusted: malformed, or its bytes do not
    match its digest. The run fails with this reason; nothing of it is served."""

    code = "bad_output"


DIGEST_RE = re.compile(r"[0-9a-f]{64}")


# Time-sortable: UTC date and time to the microsecond, then 8 random hex digits.
ID_RE = re.compile(r"[0-9]{8}T[0-9]{12}-[0-9a-f]{8}")
# A cancel request for an endpoint that cannot route it to the run (SageMaker): a marker the worker polls.
CANCEL_PREFIX = "async/cancel/"


def new_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f") + "-" + uuid.uuid4().hex[:8]


class ExecutionService:
    def __init__(self, store: Store, templates: TemplateService, environments, endpoints: Endpoints, host,
                 hash_cache: HashCache, send: Callable[[str, dict, str | None], None], max_workers: int = 32,
                 synced: Callable[[str], str | None] = lambda name: None):
        self.store = store
        self.templates = templates
        self.environments = environments
        self.endpoints = endpoints
        self.host = host
        self.hash_cache = hash_cache
        self.send = send
        self.synced = synced
        self.pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sagemaker-execution")
        self._live: dict[str, dict] = {}
        self._relayed: dict[str, dict] = {}
        self._lock = threading.Lock()

    # records

    def _save(self, record: dict) -> None:
        self.store.put(f"{PREFIX}{record['id']}.json", json.dumps(record).encode())

    def _update(self, record: dict, **fields) -> dict:
        with self._lock:
            if record["state"] in FINAL and fields.get("state") not in (None, record["state"]):
                return record  # cancelled meanwhile: the later outcome does not overwrite it
            record.update(fields)
            self._save(record)
        self.send("sagemaker.execution", self.summary(record), None)
        return record

    @staticmethod
    def summary(record: dict) -> dict:
        return {k: record.get(k) for k in ("id", "prompt_id", "template", "environment", "state", "created_at",
                                           "started_at", "finished_at", "error", "outputs", "note")}

    def get(self, execution_id: str) -> dict:
        with self._lock:
            if execution_id in self._live:
                return dict(self._live[execution_id])
        if not isinstance(execution_id, str) or not ID_RE.fullmatch(execution_id):
            raise ExecutionNotFound(f"execution {execution_id!r} does not exist")
        try:
            return json.loads(self.store.get(f"{PREFIX}{execution_id}.json").data)
        except KeyNotFound:
            raise ExecutionNotFound(f"execution {execution_id!r} does not exist") from None

    def list(self, state: str | None = None, template: str | None = None, limit: int = 50) -> list[dict]:
        keys = sorted(self.store.list(PREFIX), reverse=True)
        out = []
        for key in keys:
            if len(out) >= limit:
                break
            try:
                record = self.get(key[len(PREFIX):-len(".json")])
            except ExecutionNotFound:
                continue
            if (state and record["state"] != state) or (template and record.get("template") != template):
                continue
            out.append(self.summary(record))
        return out

    # running

    def create(self, prompt: object, workflow: object = None, template: object = None, environment: object = None,
               client_id: object = None) -> dict:
        if not isinstance(prompt, dict) or not prompt:
            raise BadRequest("prompt must be a non-empty object (ComfyUI's API format)")
        if template is None and environment is None:
            raise BadRequest("choose a template (load one from the SageMaker sidebar) or an environment to run on")
        if template is not None:
            bound = self.templates.get(template).environment  # TemplateNotFound -> 404
            if environment is None:
                environment = bound
            if environment is None:
                raise BadRequest(f"template {template!r} is bound to no environment: bind it to one first")
        manifest = self.environments.get(environment)  # EnvironmentNotFound -> 404
        name = manifest["name"]
        try:
            self.endpoints.check_ready(name)
        except EndpointNotFound:
            raise EndpointNotReady(f"no endpoint runs environment {name!r}: deploy one first") from None
        analysis = self.host.analyze(prompt)
        names = preflight.check(prompt, analysis, manifest)
        names += preflight.extra_inputs(prompt, analysis, lambda n: input_path(self.host.input_dir(), n) is not None)
        inputs = put_inputs(self.store, self.host.input_dir(), names, self.hash_cache, self.synced)
        record = {
            "id": new_id(), "prompt_id": uuid.uuid4().hex, "template": template, "environment": name,
            "endpoint": name, "client_id": client_id if isinstance(client_id, str) else None, "state": "queued",
            "created_at": now(), "started_at": None, "finished_at": None, "inputs": inputs, "outputs": {},
            "error": None, "workflow_saved": workflow is not None,
        }
        with self._lock:
            self._live[record["id"]] = record
            self._save(record)
        self.send("sagemaker.execution", self.summary(record), None)
        self.pool.submit(self._run, record, prompt)
        return self.summary(record)

    def _relay(self, record: dict, event: dict) -> None:
        kind = event.get("type")
        if kind == "sagemaker.note":  # a remark on the run (e.g. waiting for an instance), shown in the list
            self._update(record, note=(event.get("data") or {}).get("message"))
            return
        if kind not in RELAYED or record["state"] in FINAL:
            return
        data = dict(event.get("data") or {})
        data["prompt_id"] = record["prompt_id"]
        if kind == "executed" and isinstance(data.get("output"), dict):
            data["output"] = self._localise(record, data["output"])  # OutputInvalid ends the invocation
            self._seen(record)["shown"].add(str(data.get("node")))
        if kind in ("execution_success", "execution_error", "execution_interrupted"):
            self._seen(record)["ended"] = True
        self._to_page(record, kind, data)

    def _to_page(self, record: dict, kind: str, data: dict) -> None:
        """A ComfyUI-named event of a run, to the browser that queued it. A run without a client id (a
        program's) sends none: broadcast, its node ids would paint on every open canvas."""
        if record["client_id"]:
            self.send(kind, data, record["client_id"])

    def _seen(self, record: dict) -> dict:
        """What this run already showed the page (kept beside the record, never stored)."""
        with self._lock:
            return self._relayed.setdefault(record["id"], {"shown": set(), "ended": False})

    def _finish_events(self, record: dict, outputs: dict) -> None:
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

    def _localise(self, record: dict, output: dict) -> dict:
        """Copy a node's output files from the store under ComfyUI's output folder; point at the copies."""
        out = {}
        for key, items in output.items():
            if not isinstance(items, list):
                out[key] = items
                continue
            out[key] = [self._copy_out(record, i) if isinstance(i, dict) and i.get("sha256") else i for i in items]
        return out

    def _copy_out(self, record: dict, item: dict) -> dict:
        """The item's blob under output/sagemaker/<id>/, served by /view only once its bytes match its digest."""
        digest, filename = item.get("sha256"), item.get("filename")
        if not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest):
            raise OutputInvalid(f"the endpoint returned an output with a malformed digest: {str(digest)[:80]!r}")
        if not isinstance(filename, str) or Path(filename).name in ("", ".", "..") or "\x00" in filename:
            raise OutputInvalid(f"the endpoint returned an output with a malformed file name: {str(filename)[:80]!r}")
        subfolder = f"{OUTPUT_SUBFOLDER}/{record['id']}"
        name = Path(filename).name
        dest = Path(self.host.output_dir()) / subfolder / name
        if not (dest.is_file() and file_sha256(dest) == digest):
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{name}.{uuid.uuid4().hex}.part")
            try:
                self.store.get_file(blob_key(digest), str(tmp))
                if file_sha256(tmp) != digest:
                    raise OutputInvalid(f"output {name}: the stored bytes do not match their digest {digest}")
                os.replace(tmp, dest)
            finally:
                tmp.unlink(missing_ok=True)
        return {"filename": name, "subfolder": subfolder, "type": "output", "sha256": digest}

    def _outputs(self, record: dict, result: object) -> dict:
        outputs = result.get("outputs") if isinstance(result, dict) else None
        if not outputs:
            return {}
        if not isinstance(outputs, dict) or not all(isinstance(ui, dict) for ui in outputs.values()):
            raise OutputInvalid("the endpoint returned outputs that are not {node: {kind: [items]}}")
        return {str(node): self._localise(record, ui) for node, ui in outputs.items()}

    def _run(self, record: dict, prompt: dict) -> None:
        if record["state"] in FINAL:
            return
        self._update(record, state="running", started_at=now())
        body = {"execution_id": record["id"], "prompt": prompt, "inputs": record["inputs"]}
        try:
            result = self.endpoints.invoke(record["endpoint"], body, lambda e: self._relay(record, e))
        except (InvocationFailed, EndpointNotReady, SageMakerError) as err:
            result = {"status": "failed", "outputs": {}, "error": {"code": err.code, "message": err.message}}
        except Exception as err:  # never leave a run stuck in "running"
            result = {"status": "failed", "outputs": {}, "error": {"code": "internal_error", "message": str(err)}}
        try:
            outputs = self._outputs(record, result)
        except OutputInvalid as err:
            outputs, result = {}, {"status": "failed", "error": {"code": err.code, "message": err.message}}
        except (KeyNotFound, OSError, SageMakerError) as err:
            outputs, result = {}, {"status": "failed", "error": {"code": "outputs_missing", "message": str(err)}}
        status = "succeeded" if result.get("status") == "succeeded" else "failed"
        error = result.get("error")
        if status == "succeeded" and record["state"] not in FINAL:
            self._finish_events(record, outputs)
        if status == "failed" and record["state"] not in FINAL:
            if not error or error.get("code") not in ("node_error", "interrupted"):
                # The worker never said why in ComfyUI's words: tell the page, so it stops "running".
                self._to_page(record, "execution_error", {
                    "prompt_id": record["prompt_id"], "node_id": (error or {}).get("node_id"),
                    "node_type": (error or {}).get("node_type"), "exception_type": "SageMakerError",
                    "exception_message": (error or {}).get("message", "the remote run failed"), "traceback": [],
                    "executed": [], "current_inputs": {}, "current_outputs": {},
                })
        with self._lock:
            self._relayed.pop(record["id"], None)
        self._update(record, state=status, finished_at=now(), outputs=outputs, error=error,
                     timings=result.get("timings"))
        with self._lock:
            self._live.pop(record["id"], None)

    def cancel(self, execution_id: str) -> dict:
        record = self.get(execution_id)
        if record["state"] in FINAL:
            raise Conflict(f"execution {execution_id} is {record['state']}; only a queued or running one can be "
                           "cancelled")
        with self._lock:
            live = self._live.get(execution_id)
        if live is None:
            raise Conflict(f"execution {execution_id} is not running in this ComfyUI")
        was_running = live["state"] == "running"
        # Mark it first: the worker's "interrupted" answer may reach _run before the cancel call returns.
        self._update(live, state="cancelled", finished_at=now(), error={"code": "cancelled",
                                                                        "message": "cancelled by the user"})
        cancel = getattr(self.endpoints, "cancel", None)
        if cancel is not None and was_running:
            cancel(live["endpoint"], execution_id)
        self._to_page(live, "execution_interrupted", {"prompt_id": live["prompt_id"], "node_id": None,
                                                      "node_type": None, "executed": []})
        return self.summary(live)

    def fail_interrupted(self) -> int:
        """At start-up: runs left queued or running by a previous ComfyUI are failed, with the reason."""
        n = 0
        for key in self.store.list(PREFIX):
            try:
                record = json.loads(self.store.get(key).data)
            except (KeyNotFound, ValueError):
                continue
            if record.get("state") in ("queued", "running"):
                record.update(state="failed", finished_at=now(), error={
                    "code": "interrupted", "message": "ComfyUI restarted while this execution ran"})
                self._save(record)
                n += 1
        return n
