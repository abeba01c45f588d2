"""The runs a process follows: their records kept here and written to the store by compare-and-swap (what a run says
in its first second is written once, then, or with its end), who is told of each change, and the records read
back for pages (get, list)."""

from __future__ import annotations

import builtins
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from typing_extensions import TypedDict, Unpack

from . import followers
from .daemon_pool import DaemonPool
from .endpoints import Endpoints
from .errors import ExecutionCorrupt, NotFound, SageMakerError, message_of
from .execution_outputs import OutputInvalid, Outputs
from .execution_pages import NativeQueue, NoNativeQueue
from .execution_records import FINAL, ID_RE, INDEX, ExecutionRecords
from .fs.hashing import HashCache
from .identity import Owner
from .records import ExecutionError, ExecutionRecord, ExecutionState, ExecutionSummary, Manifest
from .store import KeyNotFound, PreconditionFailed, Store
from .templates import TemplateService

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


SETTLE_S = 1.0  # what a run says in its first second is written then (_settle), or with its end if sooner


class ExecutionNotFound(NotFound):
    """No execution has this id."""

    code = "not_found"


class ExecutionBase:
    """A process's runs as it follows them: their records here and in the store, who is told of a change,
    what is read back (core/executions.py ExecutionService is the whole service)."""

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
        # This process's lease as the follower of its runs (core/followers.py).
        self.follower = followers.Follower(store, self.owner, follow_ttl)

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

    def _to_page(self, record: ExecutionRecord, kind: str, data: dict) -> None:
        """A ComfyUI-named event of a run, to the browser that queued it. A run without a client id (a
        program's) sends none: broadcast, its node ids would paint on every open canvas. Listeners (other
        faces following the run) get every one."""
        self._tell(record["id"], kind, data)
        if record["client_id"]:
            self.send(kind, data, record["client_id"])
