"""Executions: prompts run on an endpoint, relayed to the browser that queued them.

`create` checks everything that can be checked before spending anything (a
template or environment chosen, the endpoint ready, the prompt's needs met by
the environment, its input files present), puts exactly the prompt's inputs
in the store by content, then runs the invocation in its own thread: never
ComfyUI's executor, so the local queue stays usable and many run at once.
ComfyUI's own events are relayed to that browser only (`sid`), with the
execution's prompt_id, and output files are copied under ComfyUI's
`output/sagemaker/<execution id>/` so `/view` serves them.

Team mode: every record carries its owner (this ComfyUI, and its ComfyUI user
under --multi-user), the template version and the environment version it ran.
Records are written with compare-and-swap (core/execution_records.py): a run
that a designer cancelled from another ComfyUI is seen cancelled here (its
owner polls its runs in flight) and stops, and nothing here rewrites it. A
ComfyUI restarting fails only its own runs left in flight. Each run names the process that follows it,
which holds a lease in the store while it lives: a run whose follower was killed outright is taken over
(where its endpoint can still answer for it) or failed by another process on the store (core/followers.py).

Other faces (the Comfy API v2, the gateway) follow runs through `listeners` (every event of a run, with
its execution id) and hand over inputs already in the store (`stored_inputs`); a run may carry a
`webhook_url`, delivered by `webhooks` (core/webhooks.py) when the run ends, wherever it ends.

A run of a template pinned to an environment version is refused unless the endpoint serves that version
(core/pinning.py); every face runs templates through `create`, so every face obeys the pin.
"""

from __future__ import annotations

import base64
import builtins
import copy
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from typing_extensions import TypedDict, Unpack

from . import cancel_tokens, followers, pinning, preflight, proofs, run_expiry
from .daemon_pool import DaemonPool
from .endpoints import EndpointNotFound, EndpointNotReady, Endpoints, InvocationFailed, RunUnknown
from .errors import (
    BadRequest,
    Conflict,
    ExecutionCorrupt,
    Forbidden,
    NotFound,
    SageMakerError,
    message_of,
)
from .execution_outputs import OUTPUT_SUBFOLDER, OutputInvalid, Outputs
from .execution_pages import FAILURE_TITLES, NativeQueue, NoNativeQueue, page_error, who
from .execution_records import FINAL, ID_RE, INDEX, ExecutionRecords, parse_record
from .fs.hashing import HashCache
from .identity import Owner, may_change_execution
from .inputs import InputMissing, get_inputs, input_path, put_inputs
from .leases import expired as leases_expired
from .names import ENVIRONMENT_NAME, TEMPLATE_NAME
from .records import ExecutionError, ExecutionExtra, ExecutionRecord, ExecutionState, ExecutionSummary, Manifest
from .store import DIGEST_RE, KeyNotFound, PreconditionFailed, Store
from .templates import Template, TemplateService, now
from .unreadable import Unreadable, report
from .webhooks import pending as pending_webhook
from .worker_contract import PROTOCOL_VERSION, RESTARTED, Invocation, WorkerEvent, WorkerResult

if TYPE_CHECKING:
    from .environments import EnvironmentService
    from .host import Host


class ExecutionChange(TypedDict, total=False):
    """What following a run changes on its record (ExecutionService._update)."""

    state: ExecutionState
    started_at: str | None
    finished_at: str | None
    outputs: dict[str, Any] | None
    error: ExecutionError | None
    timings: dict[str, float] | None
    note: str | None
    resume: dict[str, Any]

PREVIEW = "sagemaker.preview"  # a sampler preview from the worker (worker/comfy.py)
RESUMABLE = "sagemaker.resumable"  # from an endpoint (aws/runtime.py): {resume: what Endpoints.resume needs}
MAX_PREVIEW_BYTES = 4 * 1024 * 1024
SETTLE_S = 1.0  # what a run says in its first second is written then (_settle), or with its end if sooner
MANIFESTS_KEPT = 16  # served versions' manifests kept per process (one per endpoint and version)
RELAYED = ("execution_start", "execution_cached", "executing", "progress", "progress_state", "executed",
           "execution_success", "execution_error", "execution_interrupted")
# A cancel request for an endpoint that cannot route it to the run (SageMaker): a marker the worker polls.
CANCEL_PREFIX = "async/cancel/"
WATCH_INTERVAL = 2.0  # how often the owner looks at its runs in flight for a cancel from another ComfyUI
# Why a run taken over (take_over) failed, after the reason its follower stopped: a record says which.
NEVER_SENT = "it never reached its endpoint"
LOST_WITH_CONNECTION = "the result was lost with the connection"  # a stream (real-time) died with its follower
UNKNOWN_TO_ENDPOINT = "the endpoint no longer knows the run"  # followed again, but its result is gone there
# Other modules import these from here; they live where they change (core/execution_*.py).
__all__ = ["ExecutionService", "ExecutionNotFound", "NotYourExecution", "OutputInvalid", "CANCEL_PREFIX", "FINAL",
           "ID_RE", "OUTPUT_SUBFOLDER", "PREVIEW", "RESUMABLE", "FAILURE_TITLES", "NativeQueue", "NoNativeQueue",
           "page_error", "new_id", "who"]


class ExecutionNotFound(NotFound):
    """No execution has this id."""

    code = "not_found"


class NotYourExecution(Forbidden):
    """Someone else's run: only a designer's single-user ComfyUI may cancel it (core/identity.py)."""

    code = "forbidden_for_role"


def new_id(instance: str = "") -> str:
    """<UTC time to the microsecond>-<8 random hex digits>[-<instance id of the ComfyUI that made it>]."""
    made = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f") + "-" + uuid.uuid4().hex[:8]
    return f"{made}-{instance}" if instance else made


def is_async(manifest: Manifest) -> bool:
    """Whether the version's endpoint takes runs asynchronously (SageMaker async: its result lands in S3)."""
    endpoint = manifest.get("endpoint")
    return isinstance(endpoint, dict) and endpoint.get("kind") == "sagemaker" and endpoint.get("mode") == "async"


def endpoint_of(record: ExecutionRecord) -> str:
    """The endpoint a run was sent to; EndpointNotFound (the run fails saying so) for a record that names none."""
    name = record.get("endpoint")
    if not name:
        raise EndpointNotFound(f"execution {record['id']} names no endpoint")
    return name


class ExecutionService:
    def __init__(self, store: Store, templates: TemplateService, environments: EnvironmentService,
                 endpoints: Endpoints, host: Host, hash_cache: HashCache,
                 send: Callable[[str, Mapping[str, Any], str | None], None], max_workers: int = 32,
                 synced: Callable[[str], str | None] = lambda name: None, owner: Owner | None = None,
                 native: NativeQueue | None = None, webhooks=None, role: str = "designer",
                 follow_ttl: float = followers.TTL, temp=None):
        self.store = store
        self.records = ExecutionRecords(store)
        self.templates = templates
        self.environments = environments
        self.endpoints = endpoints
        self.host = host
        self.hash_cache = hash_cache
        self.send = send
        self.synced = synced
        self.owner = owner or Owner("local", "this ComfyUI")
        self.role = role
        self.native = native or NoNativeQueue()
        self.outputs = Outputs(store, lambda: self.host.output_dir(), temp)
        # Daemon threads: stopping ComfyUI never waits for its runs, which are taken over at its next start.
        self.pool = DaemonPool(max_workers=max_workers, thread_name_prefix="sagemaker-execution")
        self._live: dict[str, ExecutionRecord] = {}
        self._etags: dict[str, str] = {}
        self._relayed: dict[str, dict] = {}
        # Each run's cancel token while it runs: only this process, its invoker, can cancel it at the worker.
        self._cancel_tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        self._manifests: dict[tuple[str, int], Manifest] = {}  # (environment, version) served: _served_manifest
        # A run's first SETTLE_S s (_settle): its timer, how to follow it once written, and runs whose record here
        # has changes not yet written.
        self._settling: dict[str, threading.Timer] = {}
        self._resumes: dict[str, dict[str, Any]] = {}
        self._unstored: set[str] = set()
        self._watcher: threading.Thread | None = None
        self.webhooks = webhooks  # core.webhooks.Webhooks, or None where webhooks are not offered
        # Called with (execution id, event kind, data) for every event of a run this process follows, and
        # ("sagemaker.execution", summary) on each change of its record.
        self.listeners: list[Callable[[str, str, Mapping[str, Any]], None]] = []
        # This process's lease as the follower of its runs, and the sweep that finds the runs of followers that
        # died (core/followers.py); the sweep runs once its owner starts it.
        self.follower = followers.Follower(store, self.owner, follow_ttl)
        self.sweeper = followers.Sweeper(store, self.follower, self.take_over,
                                         lambda f: role == "designer" or f.startswith(self.owner.instance + "-"))

    # records

    def owner_for(self, user: str | None) -> Owner:
        """This ComfyUI, and the ComfyUI user a request comes from (--multi-user)."""
        return Owner(self.owner.instance, self.owner.name, user) if user else self.owner

    def is_mine(self, record: ExecutionRecord | ExecutionSummary, user: str | None = None) -> bool:
        owner = Owner.from_json(record.get("owner"))
        return owner is not None and owner.key == self.owner_for(user).key

    def _update(self, record: ExecutionRecord, quiet: bool = False, stored: bool = True,
                **fields: Unpack[ExecutionChange]) -> ExecutionRecord:
        """Change a live run's record: compare-and-swap on its last ETag. If someone else (a designer)
        ended it meanwhile, their state stands and this run takes it. `quiet`: nothing a page shows changed
        (pages and listeners are not told). `stored=False`: pages are told, the store at the next write."""
        with self._lock:
            if record["state"] in FINAL and fields.get("state") not in (None, record["state"]):
                return record  # cancelled meanwhile: the later outcome does not overwrite it
            was_final = record["state"] in FINAL
            record.update(fields)
            if not stored and record["state"] not in FINAL:
                self._unstored.add(record["id"])
            else:
                self._store(record)
        if quiet and not (record["state"] in FINAL and not was_final):
            return record
        if record["state"] in FINAL:
            self.records.ended(record)
            self._native(self.native.ended, record)
        summary = self.summary(record)
        self.send("sagemaker.execution", summary, None)
        self._tell(record["id"], "sagemaker.execution", summary)
        if record["state"] in FINAL and not was_final:
            self._ended(record)
        return record

    def _store(self, record: ExecutionRecord) -> None:
        """Write a live run's record (under the lock): see _update."""
        self._unstored.discard(record["id"])
        try:
            self._etags[record["id"]] = self.records.replace(record, self._etags[record["id"]])
        except (PreconditionFailed, KeyNotFound):
            stored: ExecutionRecord | None = None
            etag: str | None = None
            try:
                got = self.records.read(record["id"])
                if got is not None:
                    stored, etag = got
            except ExecutionCorrupt:  # rewritten unreadable under a live run: this run's record is the truth
                try:
                    etag = self.store.get(self.records.key(record["id"])).etag
                except KeyNotFound:
                    pass
            if stored is not None and etag is not None and stored["state"] in FINAL:
                record.update({"state": stored["state"], "finished_at": stored.get("finished_at"),
                               "error": stored.get("error")})
                self._etags[record["id"]] = etag
            elif etag is not None:  # changed but not ended: ours to write again
                self._etags[record["id"]] = self.records.replace(record, etag)

    def _tell(self, execution_id: str, kind: str, data: Mapping[str, Any]) -> None:
        for listener in list(self.listeners):
            try:
                listener(execution_id, kind, data)
            except Exception:  # a face's bookkeeping never fails the run
                logging.getLogger("comfyui_sagemaker").exception("comfyui-sagemaker: an execution listener failed")

    def _ended(self, record: ExecutionRecord) -> None:
        """A run reached its final state through this process: its webhook goes out (once, see webhooks)."""
        if self.webhooks is not None:
            self._native(self.webhooks.ended, record)

    @staticmethod
    def _native(step: Callable, *args) -> None:
        """ComfyUI's queue and history mirror a run as a courtesy: never fail the run for it."""
        try:
            step(*args)
        except Exception:
            logging.getLogger("comfyui_sagemaker").exception("comfyui-sagemaker: ComfyUI's queue mirror failed")

    def summary(self, record: ExecutionRecord, user: str | None = None) -> ExecutionSummary:
        summary: ExecutionSummary = {
            "id": record["id"], "prompt_id": record.get("prompt_id"), "template": record.get("template"),
            "template_version": record.get("template_version"), "environment": record.get("environment"),
            "environment_version": record.get("environment_version"), "owner": record.get("owner"),
            "state": record["state"], "created_at": record.get("created_at"), "started_at": record.get("started_at"),
            "finished_at": record.get("finished_at"), "error": record.get("error"), "outputs": record.get("outputs"),
            "note": record.get("note"), "webhook": record.get("webhook"), "mine": self.is_mine(record, user),
        }
        if "labels" in record:  # a v2 job's (its list shows them)
            summary["labels"] = record["labels"]
        return summary

    def live(self, execution_id: str) -> bool:
        """Whether this process runs (follows) that execution now."""
        with self._lock:
            return execution_id in self._live

    def get(self, execution_id: str, user: str | None = None, localise: bool = True) -> ExecutionRecord:
        """The record; with `localise`, someone else's outputs are copied here for /view (a face that serves
        outputs from the store passes False)."""
        with self._lock:
            if execution_id in self._live:
                return self._live[execution_id].copy()
        if not isinstance(execution_id, str) or not ID_RE.fullmatch(execution_id):
            raise ExecutionNotFound(f"execution {execution_id!r} does not exist")
        got = self.records.read(execution_id)
        if got is None:
            raise ExecutionNotFound(f"execution {execution_id!r} does not exist")
        record = got[0]
        if localise and not self.is_mine(record, user) and record.get("state") == "succeeded" \
                and record.get("outputs"):
            # Someone else's run: its files are in their output folder, not here; copy them from the store.
            try:
                record["outputs"] = self.outputs.all(execution_id, record["outputs"])
            except (OutputInvalid, KeyNotFound, OSError, SageMakerError) as err:
                record["outputs_error"] = message_of(err)
        return record

    def list(self, owner: str = "me", state: str | None = None, template: str | None = None, limit: int = 10,
             after: str | None = None, user: str | None = None) -> tuple[list[ExecutionSummary], str | None]:
        """A page of runs, newest first: `owner` "me" (this ComfyUI, or this user of it), "all", or an
        owner key; returns (summaries, cursor of the next page or None)."""
        return self.listing(owner, state, template, limit, after, user)[:2]

    def listing(self, owner: str = "me", state: str | None = None, template: str | None = None, limit: int = 10,
                after: str | None = None,
                user: str | None = None) -> tuple[builtins.list[ExecutionSummary], str | None, builtins.list[dict]]:
        """`list`, and the records of the page that cannot be read ([{key, reason}], skipped)."""
        skipped: list[dict] = []
        owner_key = self.owner_for(user).key if owner == "me" else None if owner == "all" else owner
        if state in ("queued", "running"):
            ids = [i for i in self.records.inflight(owner_key) if not after or i < after]
            records: list[ExecutionRecord] = []
            batch, taken = limit, 0  # read what the page needs; more only if some ended meanwhile
            with self._lock:  # a run followed here is in the state it is in here (its store may lag: _settle)
                states = {i: r["state"] for i, r in self._live.items()}
            while len(records) < limit and taken < len(ids):
                records += [r for r in self._read_many(ids[taken:taken + batch], skipped)
                            if states.get(r["id"], r.get("state")) == state]
                taken, batch = taken + batch, batch * 2
            records = records[:limit]
            cursor = records[-1]["id"] if len(records) == limit else None
        else:
            if state:
                folder = self.records.state_folder(state, owner_key)
            elif template:
                from .execution_records import template_part

                folder = f"{INDEX}template/{template_part(template)}/"
            else:
                folder = f"{INDEX}owner/{owner_key}/" if owner_key else f"{INDEX}all/"
            ids, cursor = self.records.page(folder, owner_key, template, limit, after)
            records = self._read_many(ids, skipped)
        with self._lock:
            live = dict(self._live)
        return [self.summary(live.get(r["id"], r), user) for r in records], cursor, skipped

    def _read_many(self, ids: builtins.list[str], skipped: builtins.list[dict]) -> builtins.list[ExecutionRecord]:
        """The records of `ids` that exist; those that cannot be read go to `skipped` (core/unreadable.py)."""
        def read(execution_id: str) -> ExecutionRecord | ExecutionCorrupt | None:
            try:
                got = self.records.read(execution_id)
            except ExecutionCorrupt as err:
                return err
            return got[0] if got else None

        workers = 1 if self.store.kind == "folder" else 16
        with ThreadPoolExecutor(max_workers=workers) as pool:
            found = list(pool.map(read, ids))
        skipped += [{"key": r.key, "reason": r.reason} for r in found if isinstance(r, ExecutionCorrupt)]
        return [r for r in found if r is not None and not isinstance(r, ExecutionCorrupt)]

    # running

    def create(self, prompt: object, workflow: object = None, template: object = None, environment: object = None,
               client_id: object = None, user: str | None = None, template_version: object = None, *,
               stored_inputs: dict[str, str] | None = None, webhook_url: object = None,
               extra: ExecutionExtra | None = None) -> ExecutionSummary:
        """`environment` and `template_version`, when the page sends them, are what it loaded: a run follows
        them, not a binding the designer changed since. `stored_inputs` ({file name: sha256}) are input files
        whose bytes the store holds already (a v2 job's assets, the gateway's images); `webhook_url` gets a
        signed POST when the run ends; `extra` ({api, v2, labels}) is kept on the record for other faces."""
        if not isinstance(prompt, dict) or not prompt:
            raise BadRequest("prompt must be a non-empty object (ComfyUI's API format)")
        stored = dict(stored_inputs or {})
        if not all(isinstance(k, str) and isinstance(v, str) and DIGEST_RE.fullmatch(v) for k, v in stored.items()):
            raise BadRequest("stored inputs must be {file name: sha256}")
        webhook = None
        if webhook_url is not None:
            if self.webhooks is None:
                raise BadRequest("webhooks are not available here")
            webhook = pending_webhook(self.webhooks.check(webhook_url))  # WebhookRefused before anything is spent
        if template is None and environment is None:
            # The page offers no environment to pick: it names what it offers (an API caller may name either).
            raise BadRequest(
                "load a template from the SageMaker templates tab to run it: this canvas is not one (a designer "
                "publishes them)" if self.role == "artist" else
                "load a template from the SageMaker templates tab, or publish this canvas as one (an API call names "
                "a template or an environment)")
        version: int | None = None
        if template_version is not None:
            if isinstance(template_version, bool) or not isinstance(template_version, int):
                raise BadRequest("template_version must be the version of the template loaded (an integer)")
            version = template_version
        template_name: str | None = None
        loaded: Template | None = None
        if template is not None:
            template_name = TEMPLATE_NAME.check(template)
            loaded = self.templates.get(template_name)  # TemplateNotFound -> 404
            version = version or loaded.version
            if environment is None:  # the page names the environment of the template it loaded, if it can
                environment = loaded.environment
            if environment is None:
                raise BadRequest(f"template {template!r} is bound to no environment: bind it to one first")
        requested = ENVIRONMENT_NAME.check(environment)
        try:
            served = self.endpoints.check_ready(requested).get("version")
        except EndpointNotFound:
            name = self.environments.get(requested)["name"]  # EnvironmentNotFound -> 404 first
            # Only a designer may deploy: an artist is told who can help (shared endpoints were asked already).
            then = "deploy one first, or share one from another ComfyUI" if self.role == "designer" else \
                "ask a designer to deploy or share one"
            raise EndpointNotReady(f"no endpoint runs environment {name!r}: {then}") from None
        # What runs is the version the endpoint serves, not the newest published (not deployed yet, or its deploy
        # failed): the prompt is checked against that version's manifest (read by its key) and the record names it.
        # Its manifest deleted since (or a version not known): the newest is the best check.
        manifest = (self._served_manifest(requested, served) if isinstance(served, int) else None) \
            or self.environments.get(requested)  # EnvironmentNotFound -> 404
        name = manifest["name"]
        version_run = served if isinstance(served, int) else manifest["version"]
        if loaded is not None:  # a pinned template runs only on its version (EndpointVersionMismatch: 409)
            pinning.check_served(loaded, name, version_run, lambda: self.environments.versions(name))
        input_dir = self.host.input_dir()  # None without ComfyUI (the gateway): inputs come from the store only
        if input_dir is not None and stored:
            get_inputs(self.store, input_dir, stored, self.hash_cache)  # so ComfyUI's own validation sees them
        preflight.not_installed(prompt, workflow, manifest)  # before analysis: it cannot read an untyped node
        analysis = self.host.analyze(prompt, manifest)
        names = preflight.check(prompt, analysis, manifest)
        if input_dir is not None:
            names += preflight.extra_inputs(prompt, analysis, lambda n: input_path(input_dir, n) is not None)
        names = [n for n in names if n not in stored]
        if input_dir is None and names:
            raise InputMissing(f"input file(s) {', '.join(sorted(set(names)))} are not assets of this run: without "
                               "ComfyUI there is no input folder; upload them as assets (or pass images as base64)")
        put = put_inputs(self.store, input_dir, names, self.hash_cache, self.synced) if input_dir and names else {}
        inputs = {**put, **stored}
        # ComfyUI's own validation, where this ComfyUI knows every node type (else the worker's is the check);
        # after the input files, whose absence put_inputs says in its own words.
        outputs_to_execute = preflight.comfy_validation(
            self.host.validate(prompt) if not analysis["missing"] else None, manifest)
        follower = self.follower.hold()
        record: ExecutionRecord = {
            "id": new_id(self.owner.instance), "prompt_id": uuid.uuid4().hex, "template": template_name,
            "template_version": version, "follower": follower,
            "environment": name, "environment_version": version_run, "endpoint": name,
            "owner": self.owner_for(user).to_json(), "client_id": client_id if isinstance(client_id, str) else None,
            "state": "queued", "created_at": now(), "started_at": None, "finished_at": None, "inputs": inputs,
            "outputs": {}, "error": None, "workflow_saved": workflow is not None,
            "parameters": proofs.values_in(loaded, prompt) if loaded is not None else None,  # a proof keeps them
        }
        if extra is not None:  # what another face keeps on its runs' records: these fields only
            if "api" in extra:
                record["api"] = extra["api"]
            if "v2" in extra:
                record["v2"] = extra["v2"]
            if "labels" in extra:
                record["labels"] = extra["labels"]
        if webhook is not None:
            record["webhook"] = webhook
        try:
            with self._lock:
                self._etags[record["id"]] = self.records.create(record)
                self._live[record["id"]] = record
        except BaseException:
            self.records.unmark_follower(record, follower)
            self.follower.drop()
            raise
        self.send("sagemaker.execution", self.summary(record, user), None)
        self._native(self.native.started, record, prompt, workflow, outputs_to_execute)
        self._watch()
        self.pool.submit(self._invoke, record, prompt, is_async(manifest))
        return self.summary(record, user)

    def _served_manifest(self, environment: str, version: int) -> Manifest | None:
        """The manifest of the version an endpoint serves, read once per process: a published version is never
        rewritten (core/publish.py creates it exclusively, last), so every run of it after the first reads nothing."""
        key = (environment.lower(), version)
        with self._lock:
            manifest = self._manifests.get(key)
        if manifest is None:
            manifest = self.environments.at(environment, version)
            if manifest is not None:
                with self._lock:
                    while len(self._manifests) >= MANIFESTS_KEPT:
                        self._manifests.pop(next(iter(self._manifests)))
                    self._manifests[key] = manifest
        return copy.deepcopy(manifest) if manifest is not None else None

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

    def _keep_resume(self, record: ExecutionRecord, resume: dict[str, Any]) -> None:
        """How another follower can answer for the run: stored at once in a run older than SETTLE_S s, else kept
        for _settle (a run that ends sooner never needs it: its end is written instead)."""
        with self._lock:
            if record["id"] in self._settling:
                self._resumes[record["id"]] = resume
                return
        self._update(record, quiet=True, resume=resume)

    def _settle(self, record: ExecutionRecord) -> None:
        """SETTLE_S s into a run that has not ended: what was kept from the store meanwhile is written (its
        "running" where it was kept, how to follow it again), one write; from now on each change is written."""
        with self._lock:
            self._settling.pop(record["id"], None)
            resume = self._resumes.pop(record["id"], None)
            unstored = record["id"] in self._unstored
            if record["id"] not in self._live or record["state"] in FINAL or not (unstored or resume):
                return  # it ended first (its end wrote it), or nothing waits
        try:
            if resume is not None:
                self._update(record, quiet=True, resume=resume)
            else:
                self._update(record, quiet=True)
        except Exception:  # a passing store error: the run goes on, and its end is written
            logging.getLogger("comfyui_sagemaker").warning(
                "comfyui-sagemaker: could not write run %s a second into it", record["id"], exc_info=True)

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

    def _to_page(self, record: ExecutionRecord, kind: str, data: dict) -> None:
        """A ComfyUI-named event of a run, to the browser that queued it. A run without a client id (a
        program's) sends none: broadcast, its node ids would paint on every open canvas. Listeners (other
        faces following the run) get every one."""
        self._tell(record["id"], kind, data)
        if record["client_id"]:
            self.send(kind, data, record["client_id"])

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

    def _resume(self, record: ExecutionRecord, reason: str) -> None:
        """A run taken over from a follower that died: its endpoint answers for it from where it is. Its cancel
        token died with that follower: the endpoint cannot be asked to stop it (it runs to its end there)."""
        def answer() -> WorkerResult:
            try:
                return self.endpoints.resume(endpoint_of(record), record["id"], record["resume"],
                                             lambda e: self._relay(record, e))
            except RunUnknown as err:
                return {"status": "failed", "outputs": {},
                        "error": {"code": "interrupted", "message": f"{reason}: {UNKNOWN_TO_ENDPOINT} ({err.message})"}}

        self._follow(record, answer)

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

    def check_may_change(self, record: ExecutionRecord, role: str, user: str | None, shared: bool = False) -> None:
        """NotYourExecution (403) unless this request may cancel or otherwise change `record`: the one check every
        face's change of a run goes through (core/identity.py's may_change_execution)."""
        if may_change_execution(role, self.is_mine(record, user), shared):
            return
        owner = Owner.from_json(record.get("owner"))
        whose = "an older version's" if owner is None else \
            f"{owner.user} on {owner.name}'s" if owner.user else f"{owner.name}'s"
        if role == "designer":
            raise NotYourExecution(f"execution {record['id']} is {whose}: here (under --multi-user, or through the "
                             "gateway) each user cancels only their own runs; a designer cancels someone else's "
                             "from a single-user ComfyUI")
        raise NotYourExecution(f"execution {record['id']} is {whose}; only a designer can cancel someone else's run")

    def cancel(self, execution_id: str, role: str = "designer", user: str | None = None,
               shared: bool = False) -> ExecutionSummary:
        """Cancel a queued or running run: NotYourExecution unless the caller may (check_may_change), Conflict once
        it has ended. `shared`: several people act here as one role (--multi-user, the gateway)."""
        record = self.get(execution_id, user, localise=False)
        self.check_may_change(record, role, user, shared)
        if record["state"] in FINAL:
            raise Conflict(f"execution {execution_id} is {record['state']}; only a queued or running one can be "
                           "cancelled")
        by = who(self.owner_for(user))
        # Someone else's: the owner's page names who (web/js/run_notices.js).
        error: ExecutionError | None = None if self.is_mine(record, user) else \
            {"code": "cancelled", "message": f"cancelled by {by}", "by": by}
        return self._end(record, error, user)

    def end_runs_on(self, endpoint: str, user: str | None = None) -> int:
        """Before a person stops `endpoint` (the caller checked they may): its runs in flight, everyone's, end
        "stopped by <them>" instead of failing later with the worker's broken connection. How many it ended."""
        by = who(self.owner_for(user))
        ended = 0
        for execution_id in self.records.inflight():
            try:
                got = self.records.read(execution_id)
            except ExecutionCorrupt:
                continue
            if got is None or got[0].get("endpoint") != endpoint or got[0].get("state") in FINAL:
                continue
            error: ExecutionError = {"code": "endpoint_stopped", "message": f"stopped by {by}"}
            if not self.is_mine(got[0], user):
                error["by"] = by
            try:
                self._end(got[0], error, user)
                ended += 1
            except Conflict:  # it ended meanwhile
                continue
        return ended

    def _end(self, record: ExecutionRecord, error: ExecutionError | None, user: str | None) -> ExecutionSummary:
        """End a queued or running run cancelled (with `error`, else "cancelled by" the user): here if this
        process follows it, else through the store (its follower stops it)."""
        with self._lock:
            live = self._live.get(record["id"])
        if live is None:
            return self._cancel_elsewhere(record, user, error)
        was_running = live["state"] == "running"
        # Mark it first: the worker's "interrupted" answer may reach _invoke before the cancel call returns.
        self._update(live, state="cancelled", finished_at=now(),
                     error=error or {"code": "cancelled", "message": "cancelled by the user"})
        self._stop(live, was_running)
        return self.summary(live, user)

    def _stop(self, live: ExecutionRecord, was_running: bool) -> None:
        with self._lock:
            token = self._cancel_tokens.get(live["id"])
        endpoint = live.get("endpoint")
        if was_running and token is not None and endpoint:
            self.endpoints.cancel(endpoint, live["id"], token)
        self._to_page(live, "execution_interrupted", {"prompt_id": live["prompt_id"], "node_id": None,
                                                      "node_type": None, "executed": []})

    def _cancel_elsewhere(self, record: ExecutionRecord, user: str | None,
                          error: ExecutionError | None = None) -> ExecutionSummary:
        """A run another process follows (another ComfyUI, a gateway replica), checked by the caller: ended
        through compare-and-swap; its follower sees that and stops it at the worker with the run's cancel token,
        which only the follower holds (a run whose follower is gone runs on to its end there, its record
        cancelled)."""
        by = self.owner_for(user)

        def cancelled(stored: ExecutionRecord) -> ExecutionRecord | None:
            if stored.get("state") in FINAL:
                return None
            return {**stored, "state": "cancelled", "finished_at": now(),
                    "error": error or {"code": "cancelled", "message": f"cancelled by {by.name}"}}

        done = self.records.swap(record["id"], cancelled)
        if done is None:
            stored = self.records.read(record["id"])
            state = stored[0].get("state") if stored else "gone"
            raise Conflict(f"execution {record['id']} is {state}; only a queued or running one can be cancelled")
        self.records.ended(done, earlier=True)
        self._ended(done)
        self.send("sagemaker.execution", self.summary(done, user), None)
        return self.summary(done, user)

    def _watch(self) -> None:
        """While this ComfyUI has runs in flight, look at their records for a cancel from elsewhere."""
        with self._lock:
            if self._watcher is not None and self._watcher.is_alive():
                return
            self._watcher = threading.Thread(target=self._watch_loop, daemon=True, name="sagemaker-run-watch")
            self._watcher.start()

    def _watch_loop(self) -> None:
        while True:
            time.sleep(WATCH_INTERVAL)
            with self._lock:
                live = [(r, self._etags.get(r["id"])) for r in self._live.values()]
            if not live:
                return
            for record, etag in live:
                try:
                    got = self.store.get_if_changed(self.records.key(record["id"]), etag)
                except Exception:  # a passing store error: look again next time
                    continue
                if got is None or record["state"] in FINAL:
                    continue
                try:
                    stored = parse_record(got.data, self.records.key(record["id"]), record["id"])
                except Unreadable as err:  # rewritten unreadable: not a cancel; this run writes it again as it goes
                    report(err.key, err.reason)
                    continue
                if stored["state"] == "cancelled":
                    was_running = record["state"] == "running"
                    with self._lock:
                        record.update({"state": stored["state"], "finished_at": stored.get("finished_at"),
                                       "error": stored.get("error")})
                        self._etags[record["id"]] = got.etag
                    try:
                        self._stop(record, was_running)
                        self.send("sagemaker.execution", self.summary(record), None)
                    except Exception:  # this run's stop is its own: the watch goes on for the others
                        logging.getLogger("comfyui_sagemaker").exception(
                            "comfyui-sagemaker: stopping run %s, cancelled elsewhere, failed", record["id"])

    def fail_interrupted(self) -> int:
        """At start-up: this ComfyUI's runs (its --multi-user users' too) left queued or running by its previous
        life are taken over (take_over: followed again where their endpoint can answer, else failed with the
        reason). A run another process took over meanwhile is that one's; others' runs are theirs. The work
        grows with the runs in flight only."""
        mine = self.owner.instance + "-"

        def previous_life(follower: str | None) -> bool:  # a record of an older version names no follower
            return follower is None or (follower.startswith(mine) and follower != self.follower.id)

        return sum(self.take_over(execution_id, previous_life, "ComfyUI restarted while this execution ran")
                   in ("failed", "followed") for execution_id in self.records.inflight_of(self.owner.instance))

    def take_over(self, execution_id: str, is_dead: Callable[[str | None], bool], reason: str) -> str:
        """A run whose follower died (`is_dead(its follower id)`): followed from here if its endpoint can still
        answer for it (Endpoints.resume: an async run's result in S3, a local worker's kept result), else failed
        with `reason` and why its result is lost (NEVER_SENT, LOST_WITH_CONNECTION; UNKNOWN_TO_ENDPOINT once
        followed), by compare-and-swap: nothing done and paid for is thrown away. Returns "followed",
        "failed", "ended" (it had ended: its in-flight markers are cleared), "stale" (no record, or another
        follower has it) or "live" (this process follows it)."""
        if self.live(execution_id):
            return "live"
        try:
            got = self.records.read(execution_id)
        except ExecutionCorrupt:  # logged; it can be neither failed nor followed: it leaves the in-flight folder
            self.records.forget_inflight(execution_id)
            return "ended"
        if got is None:
            return "stale"
        record = got[0]
        if record.get("state") in FINAL:
            self.records.ended(record, earlier=True)
            return "ended"
        if record.get("state") not in ("queued", "running") or not is_dead(record.get("follower")):
            return "stale"
        if isinstance(record.get("resume"), dict):
            return self._follow_again(record, is_dead, reason)

        def failed(stored: ExecutionRecord) -> ExecutionRecord | None:
            if stored.get("state") not in ("queued", "running") or not is_dead(stored.get("follower")):
                return None
            # No endpoint said it could answer for the run to another follower: queued, it was never sent;
            # running, its answer was a stream to the follower that died (the endpoint runs it on to its end).
            why = NEVER_SENT if stored.get("state") == "queued" else LOST_WITH_CONNECTION
            return {**stored, "state": "failed", "finished_at": now(), "error": {"code": "interrupted",
                                                                                 "message": f"{reason}: {why}"}}

        done = self.records.swap(execution_id, failed)
        if done is None:
            return "stale"
        # Its cancel token died with its follower: the endpoint runs it to its end (within its time limit).
        self._ended_orphan(done)
        return "failed"

    def _ended_orphan(self, done: ExecutionRecord) -> None:
        """A run another process followed was ended here: its markers, its webhook, its pages told."""
        self.records.ended(done, earlier=True)
        self._ended(done)
        summary = self.summary(done)
        self.send("sagemaker.execution", summary, None)
        self._tell(done["id"], "sagemaker.execution", summary)

    def expire_abandoned(self, clock: Callable[[], float] = time.time) -> int:
        """A designer's maintenance (core/run_expiry.py): every run in flight whose follower's lease is gone or
        expired and that began longer ago than its endpoint's run time limit is failed, "expired: ComfyUI <its
        owner's instance> did not come back within <limit>", by compare-and-swap (a follower that came back, or a
        sweep that took the run over meanwhile, wins). The number expired."""
        limits: dict[tuple[str, int | None], float] = {}
        expired = 0
        for execution_id in self.records.inflight():
            if self.live(execution_id):
                continue
            try:
                got = self.records.read(execution_id)
            except ExecutionCorrupt:  # logged; a person looks at it
                continue
            record = got[0] if got else None
            if record is None or record.get("state") not in ("queued", "running"):
                continue
            follower = record.get("follower")
            if follower and self._follows(follower, clock()):
                continue
            limit = self._run_limit(record, limits)
            began = run_expiry.began(record)
            if began is None or clock() - began < limit:
                continue
            owner = Owner.from_json(record.get("owner"))
            why = run_expiry.reason(owner.instance if owner else "unknown", limit)

            def expire(stored: ExecutionRecord, follower: str | None = follower,
                       why: str = why) -> ExecutionRecord | None:
                if stored.get("state") not in ("queued", "running") or stored.get("follower") != follower:
                    return None
                return {**stored, "state": "failed", "finished_at": now(),
                        "error": {"code": run_expiry.CODE, "message": why}}

            done = self.records.swap(execution_id, expire)
            if done is not None:
                self._ended_orphan(done)
                expired += 1
        if expired:
            logging.getLogger("comfyui_sagemaker").info("comfyui-sagemaker: expired %d run(s) of ComfyUIs that did "
                                                        "not come back", expired)
        return expired

    def _follows(self, follower: str, at: float) -> bool:
        """Whether `follower`'s lease (its process's heartbeat) is held and unexpired at `at`."""
        try:
            body = json.loads(self.store.get(followers.lease_key(follower)).data)
        except KeyNotFound:
            return False
        except ValueError:  # unreadable: its holder cannot renew it either
            return False
        return not leases_expired(body, at)

    def _run_limit(self, record: ExecutionRecord, limits: dict[tuple[str, int | None], float]) -> float:
        """The run time limit of the endpoint the run went to, by its environment version's config."""
        name, version = record.get("environment") or "", record.get("environment_version")
        if (name, version) not in limits:
            try:
                manifest = self.environments.get(name, version) if name else None
            except SageMakerError:  # deleted, unreadable: the longest limit
                manifest = None
            limits[(name, version)] = run_expiry.limit_of(manifest.get("endpoint") if manifest else None)
        return limits[(name, version)]

    def _follow_again(self, record: ExecutionRecord, is_dead: Callable[[str | None], bool], reason: str) -> str:
        me = self.follower.hold()
        self.records.mark_follower(record, me)  # before the record names it: see core/execution_records.py

        def claimed(stored: ExecutionRecord) -> ExecutionRecord | None:
            if stored.get("state") not in ("queued", "running") or not is_dead(stored.get("follower")):
                return None
            return {**stored, "follower": me, "note": f"followed again: {reason}"}

        mine = None
        try:
            mine = self.records.swap(record["id"], claimed)
        finally:
            if mine is None:  # lost the race, or the store failed: not ours to follow
                self.records.unmark_follower(record, me)
                self.follower.drop()
        if mine is None:
            return "stale"
        self.records.unmark_follower(record, record.get("follower"))
        self.records.unmark_earlier(record, record.get("follower"))  # from here on its marker is of this layout
        got = self.records.read(record["id"])
        with self._lock:
            self._live[record["id"]] = mine
            self._etags[record["id"]] = got[1] if got else ""
        self._watch()
        self.pool.submit(self._resume, mine, reason)
        return "followed"

    def drain(self, timeout: float, why: str) -> int:
        """A process stopping (the gateway): wait up to `timeout` s for the runs it follows to end, then fail
        the others with `why` and ask their endpoints to stop them. The number failed so."""
        self.sweeper.stop()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._live:
                    break
            time.sleep(0.05)
        with self._lock:
            left = list(self._live.values())
        for live in left:
            was_running = live["state"] == "running"
            self._update(live, state="failed", finished_at=now(), error={"code": "interrupted", "message": why})
            try:
                self._stop(live, was_running)
            except SageMakerError:
                pass
        self.follower.close()  # its runs are ended: nothing is left for another process to take over
        return len(left)

    def apply_retention(self, days: int) -> int:
        """Remove execution records older than `days` days with their index markers and their local output
        copies. Their output blobs are the blob sweep's (core/retention.py): another record, an input or an
        environment may have the same bytes. Done by a designer's ComfyUI."""
        cutoff = datetime.now(timezone.utc) - timedelta(days=days)
        removed = 0
        for execution_id in list(self.records.expired(cutoff)):
            try:
                got = self.records.read(execution_id)
            except ExecutionCorrupt:  # logged; kept, for a person to look at
                continue
            if got is None:
                continue
            record = got[0]
            if record.get("state") not in FINAL:
                continue  # in flight (or left so by a ComfyUI that is gone: its owner fails it at its start)
            self.records.remove(record)
            self.outputs.remove_local(execution_id)
            removed += 1
        return removed
