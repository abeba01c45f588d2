"""Comfy API v2 jobs: executions of one environment's endpoint, created, read, listed and cancelled through
the same ExecutionService as every other run (its checks, preflight, records, cancel markers, webhooks).

A job is `{"workflow": <API-format graph>}` whose inputs may hold `core/ASSET` references (resolved to input
files whose bytes the store has), or, as this project's extension, `{"template": name, "inputs": {param:
value}}` (core/template_executions.py). Both may carry `webhook_url` and `metadata` (string labels). The
job id is the execution id; `GET /sagemaker/executions/{id}` shows the same run.

Errors speak the v2 protocol: a UI-format graph is `workflow_format_ui`, anything else the graph or the
environment cannot run (unknown node types, models the environment lacks, ComfyUI's own validation) is
`invalid_workflow` with per-node details, an unknown asset `missing_asset`; all 422, before anything is spent.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from ..analysis import detect_format
from ..errors import BadRequest, Conflict, NotFound, SageMakerError
from ..execution_records import FINAL
from ..executions import ExecutionService
from ..names import ENVIRONMENT_NAME
from ..preflight import EnvironmentLacks, PromptRefused
from ..records import ExecutionExtra, ExecutionRecord
from ..store import KeyNotFound, Store, blob_key
from ..template_executions import TemplateExecutions
from .assets import AssetService, input_name, is_reference
from .idempotency import Claim, Idempotency, IdempotencyConflict, IdempotencyKeyReuse, Replay, fingerprint
from .job_view import STATUS, Job, LiveJobs, Mount, job_json, stored_progress, summary_json

MAX_LABELS = 16


class JobRequest(BaseModel):
    """POST /jobs's body, declared once: checked here field by field (its errors speak the v2 protocol, and the
    body as sent is the idempotency fingerprint), documented by the OpenAPI document from this model."""

    model_config = ConfigDict(extra="forbid")
    workflow: Any = Field(None, json_schema_extra={
        "type": "object", "description": "API-format graph; core/ASSET references where files go"})
    template: Any = Field(None, json_schema_extra={
        "type": "string", "description": "or: run this template (this project's extension)"})
    inputs: Any = Field(None, json_schema_extra={
        "type": "object", "description": "the template's parameter values (name -> value; this project's extension)"})
    webhook_url: Any = Field(None, json_schema_extra={
        "type": "string", "format": "uri",
        "description": "gets a signed POST of the run when it ends (this project's extension)"})
    metadata: Any = Field(None, json_schema_extra={
        "type": "object", "additionalProperties": {"type": "string", "maxLength": 512}, "maxProperties": MAX_LABELS,
        "description": "string labels (keys of 1 to 64 characters)"})
    extra_data: Any = Field(None, json_schema_extra={
        "type": "object", "description": "accepted, not used (no partner nodes on these endpoints)"})


FIELDS = frozenset(JobRequest.model_fields)


class InvalidWorkflow(SageMakerError):
    """The graph cannot run here: malformed, a node type or model the environment lacks, or refused by
    ComfyUI's own validation. `details` says it per node (`node_errors`)."""

    code = "invalid_workflow"

    def __init__(self, message: str, details: dict | None = None):
        super().__init__(message)
        self.details = details


class WorkflowFormatUi(InvalidWorkflow):
    """A UI-format workflow (the editor's save, with `nodes` and `links`) was sent where the API format goes."""

    code = "workflow_format_ui"


class JobNotFound(NotFound):
    """No job of this environment has this id."""

    code = "not_found"


class JobWorkflow(TypedDict):
    """GET /jobs/{id}/workflow: the graph a job ran. Always `api` here (the prompt the endpoint ran, asset
    references resolved to the input files they became); `save` is for a job pinned to an editor's workflow
    version, which no job here is."""

    format: Literal["api", "save"]
    workflow: dict[str, Any]


# The protocol's job statuses (`?status=` of GET /jobs) -> the execution states that show as each. `canceling`
# and `expired` are never shown here (a cancel is final at once; an expired record is gone), so they list
# nothing rather than being refused.
STATES: dict[str, tuple[str, ...]] = {status: tuple(s for s, v in STATUS.items() if v == status)
                                      for status in ("queued", "running", "succeeded", "canceling", "canceled",
                                                     "failed", "expired")}


class StatusFilterInvalid(BadRequest):
    """`status` of GET /jobs is not one of the protocol's job statuses."""

    code = "invalid_status_filter"


def comfy_node_errors(node_errors: dict) -> dict:
    """ComfyUI's /prompt node_errors in the v2 shape: {node id: [{field, reason, message, class_type}]}."""
    out: dict[str, list[dict]] = {}
    for node_id, entry in (node_errors or {}).items():
        entry = entry if isinstance(entry, dict) else {}
        for err in entry.get("errors") or []:
            out.setdefault(str(node_id), []).append({
                "field": (err.get("extra_info") or {}).get("input_name"), "reason": err.get("type"),
                "message": f"{err.get('message')}: {err.get('details')}" if err.get("details") else err.get("message"),
                "class_type": entry.get("class_type")})
    return out


def _labels(metadata: object) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or len(metadata) > MAX_LABELS or not all(
            isinstance(k, str) and isinstance(v, str) and 0 < len(k) <= 64 and len(v) <= 512
            for k, v in metadata.items()):
        raise BadRequest(f"metadata must be an object of at most {MAX_LABELS} string labels (keys of 1 to 64 "
                         "characters, values of at most 512)")
    return dict(metadata)


class JobsV2:
    def __init__(self, executions: ExecutionService, assets: AssetService, template_executions: TemplateExecutions,
                 idempotency: Idempotency, live: LiveJobs, store: Store, retention_days: Callable[[], int]):
        self.executions = executions
        self.assets = assets
        self.template_executions = template_executions
        self.idempotency = idempotency
        self.live = live
        self.store = store
        self.retention_days = retention_days

    # creating

    def create(self, environment: str, body: object, mount: Mount, user: str | None = None,
               idempotency_key: str | None = None) -> Job:
        """The new Job. A key used before is IdempotencyKeyReuse (422) whatever the body, also while its first
        request is still being handled: the protocol's keys are single-use and it lists no 409 for POST /jobs."""
        environment = ENVIRONMENT_NAME.check(environment)
        claim: Claim | None = None
        if idempotency_key is not None:
            scope = f"jobs.{environment.lower()}.{self.executions.owner_for(user).key}"
            try:
                got = self.idempotency.begin(scope, idempotency_key, fingerprint(body))
            except IdempotencyConflict:
                raise IdempotencyKeyReuse("this Idempotency-Key was already used by a request still being "
                                          "handled; do not resubmit (list the jobs to find the one it makes)") from None
            if isinstance(got, Replay):
                # The protocol (comfy-sdk: "a reused key is rejected, not replayed"): 422 even for the same
                # body; the job the first request made is named, so the caller need not list to find it.
                job_id = got.response.get("id")
                raise IdempotencyKeyReuse(f"this Idempotency-Key was already used: job {job_id} was accepted for "
                                          "it; do not resubmit (GET the job)", {"job_id": job_id})
            claim = got
        try:
            job = self._create(environment, body, mount, user)
        except BaseException:
            if claim is not None:
                self.idempotency.abandon(claim)
            raise
        if claim is not None:
            self.idempotency.finish(claim, 201, job)
        return job

    def _create(self, environment: str, body: object, mount: Mount, user: str | None) -> Job:
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object: {\"workflow\": <API-format graph>}")
        unknown = sorted(set(body) - FIELDS)
        if unknown:
            raise BadRequest(f"unknown fields: {', '.join(unknown)} (allowed: {', '.join(sorted(FIELDS))})")
        labels = _labels(body.get("metadata"))
        template = body.get("template")
        stored: dict[str, str] = {}
        if template is not None:
            if body.get("workflow") is not None:
                raise InvalidWorkflow("send either a workflow or a template with inputs, not both")
            # InputsInvalid -> 422
            prompt, _schema = self.template_executions.prepare(template, body.get("inputs"), stored)
        else:
            if body.get("inputs") is not None:
                raise BadRequest("inputs are a template's parameter values: name the template too")
            prompt = self._graph(body.get("workflow"), stored)
        extra: ExecutionExtra = {"api": "v2", "labels": labels,
                                 "v2": {"origin": mount.origin, "prefix": mount.prefix, "nodes": len(prompt),
                                        "prompt": self._keep(prompt)}}
        try:
            record = self.executions.create(prompt, None, template, environment, None, user, stored_inputs=stored,
                                            webhook_url=body.get("webhook_url"), extra=extra)
        except EnvironmentLacks as err:
            raise InvalidWorkflow(err.message, {"node_errors": err.node_errors}) from None
        except PromptRefused as err:
            raise InvalidWorkflow(err.message, {"node_errors": comfy_node_errors(err.node_errors)}) from None
        self.live.track(record["id"], prompt)
        full = self.executions.get(record["id"], user, localise=False)
        return self.job(full, mount)

    def _keep(self, prompt: dict) -> str:
        """The prompt as a blob (its sha256): the record names it, which keeps it as long as the record
        (core/retention.py); the same prompt twice is one blob. One refused after this leaves a blob that
        nothing names, swept after the grace period."""
        data = json.dumps(prompt, separators=(",", ":")).encode()
        digest = hashlib.sha256(data).hexdigest()
        fd, path = tempfile.mkstemp(prefix="sagemaker-prompt-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            if not self.store.has_blob(digest, len(data), path):
                self.store.put_blob(digest, path)
        finally:
            os.unlink(path)
        return digest

    def _graph(self, workflow: object, stored: dict[str, str]) -> dict:
        """The prompt of a v2 graph: checked for its format, asset references made input file names."""
        if isinstance(workflow, dict) and isinstance(workflow.get("nodes"), list):
            raise WorkflowFormatUi("this is ComfyUI's UI format (the editor's save, with nodes and links); send "
                                   "the API format (Export (API) in ComfyUI, a {node id: {class_type, inputs}} "
                                   "object)")
        if not isinstance(workflow, dict) or not workflow:
            raise InvalidWorkflow("workflow must be a non-empty API-format graph: {node id: {class_type, inputs}}")
        try:
            detect_format(workflow)
        except BadRequest:
            bad = {str(k): [{"reason": "malformed_node", "message": "a node is {class_type: str, inputs: {...}}"}]
                   for k, v in workflow.items() if not (isinstance(v, dict) and isinstance(v.get("class_type"), str))}
            raise InvalidWorkflow("workflow is not an API-format graph", {"node_errors": bad}) from None
        prompt = copy.deepcopy(workflow)
        for node in prompt.values():
            inputs = node.get("inputs")
            if inputs is None:
                continue
            if not isinstance(inputs, dict):
                raise InvalidWorkflow("a node's inputs must be an object")
            for key, value in inputs.items():
                if is_reference(value):
                    asset = self.assets.resolve(value)  # MissingAsset -> 422
                    inputs[key] = input_name(asset)
                    stored[inputs[key]] = asset.sha256
        return prompt

    # reading

    def _record(self, environment: str, job_id: str, user: str | None) -> ExecutionRecord:
        environment = ENVIRONMENT_NAME.check(environment)
        try:
            record = self.executions.get(job_id, user, localise=False)
        except NotFound:
            raise JobNotFound(f"job {str(job_id)[:80]!r} does not exist") from None
        if str(record.get("environment") or "").lower() != environment.lower():
            raise JobNotFound(f"job {job_id} is not a job of environment {environment}")
        return record

    def job(self, record: ExecutionRecord, mount: Mount) -> Job:
        progress, outputs = None, None
        live = self.live.get(record["id"]) if record["state"] not in FINAL else None
        if live is not None:
            progress, outputs = live.tracker.snapshot(), live.outputs
        elif record["state"] == "running":
            progress = stored_progress(self.store, record)[0]
        return job_json(record, mount, self.retention_days(), progress, outputs,
                        sizes=lambda digest: self.store.size(blob_key(digest)))

    def get(self, environment: str, job_id: str, mount: Mount, user: str | None = None) -> Job:
        return self.job(self._record(environment, job_id, user), mount)

    def record(self, environment: str, job_id: str, user: str | None = None) -> ExecutionRecord:
        return self._record(environment, job_id, user)

    def workflow(self, environment: str, job_id: str, user: str | None = None) -> JobWorkflow:
        """The graph the job ran, read back from the store by the digest its record keeps. A job whose record
        keeps none (not queued through the v2 API, or by a version before it kept them) is JobNotFound, as the
        protocol says of a workflow not there; so is one whose blob is gone or does not match its digest."""
        record = self._record(environment, job_id, user)
        run = record.get("v2")
        digest = run.get("prompt") if run is not None else None
        if not digest:
            raise JobNotFound(f"job {job_id} keeps no workflow (it was not queued through the Comfy API v2)")
        try:
            data = self.store.get(blob_key(digest)).data
            if hashlib.sha256(data).hexdigest() != digest:  # rewritten in the store: not the graph it ran
                raise ValueError("digest mismatch")
            prompt = json.loads(data)
        except (KeyNotFound, ValueError):
            raise JobNotFound(f"the workflow of job {job_id} is no longer in the store") from None
        return {"format": "api", "workflow": prompt}

    def list(self, environment: str, mount: Mount, limit: int = 50, cursor: str | None = None,
             user: str | None = None, status: str | None = None) -> dict:
        """A page of this owner's jobs on this environment, newest first; `next_cursor` when there may be more.
        `status`: only the jobs in that status (one of the protocol's; StatusFilterInvalid otherwise)."""
        environment = ENVIRONMENT_NAME.check(environment)
        if status is not None and status not in STATES:
            raise StatusFilterInvalid(f"status must be one of {', '.join(STATES)}")
        if status is not None and not STATES[status]:
            return {"jobs": [], "skipped": []}
        state = STATES[status][0] if status is not None else None
        records, after, skipped = self.executions.listing("me", state, None, limit, cursor, user)
        jobs = [summary_json(r) for r in records if str(r.get("environment") or "").lower() == environment.lower()]
        page: dict = {"jobs": jobs, "skipped": skipped}
        if after:
            page["next_cursor"] = after
        return page

    def delete_asset(self, asset_id: str, user: str | None = None) -> None:
        """DELETE /assets/{id}: refused (AssetInUse) while one of this owner's jobs in flight reads its bytes."""
        owner_key = self.executions.owner_for(user).key

        def reads(sha256: str) -> str | None:
            for job_id in self.executions.records.inflight(owner_key):
                try:
                    record = self.executions.get(job_id, user, localise=False)
                except NotFound:
                    continue  # ended and gone meanwhile
                if record.get("state") not in FINAL and sha256 in (record.get("inputs") or {}).values():
                    return job_id
            return None

        self.assets.delete(asset_id, user, reads)

    def cancel(self, environment: str, job_id: str, mount: Mount, role: str, user: str | None = None,
               shared: bool = False) -> Job:
        """Request cancellation; a job already ended is answered as it is (idempotent). Someone else's job is
        refused (NotYourExecution, 403) whatever its state, by the execution service's one check."""
        record = self._record(environment, job_id, user)
        self.executions.check_may_change(record, role, user, shared)
        if record.get("state") not in FINAL:
            try:
                self.executions.cancel(job_id, role, user, shared)
            except Conflict:
                pass  # it ended meanwhile
        return self.get(environment, job_id, mount, user)
