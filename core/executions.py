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

This module starts runs (`create`, its checks before anything is spent), drains a stopping process and removes
old records; the service's other parts are its bases, each in its own module: execution_base.py (the records of
the runs followed here, their writes and reads), execution_cancels.py (cancel, here and from elsewhere, and the
watch), execution_invocation.py (a run's invocation and its events), execution_takeover.py (runs whose follower
died, and expiry), execution_pages.py (what pages are shown of a failed run, ComfyUI's queue mirror).
"""

from __future__ import annotations

import copy
import functools
import time
import uuid
from datetime import datetime, timedelta, timezone

from . import followers, pinning, preflight, proofs
from .endpoints import EndpointNotFound, EndpointNotReady
from .errors import BadRequest, ExecutionCorrupt, SageMakerError
from .execution_base import ExecutionNotFound
from .execution_cancels import CANCEL_PREFIX, NotYourExecution
from .execution_invocation import PREVIEW, RESUMABLE
from .execution_outputs import OUTPUT_SUBFOLDER, OutputInvalid
from .execution_pages import FAILURE_TITLES, NativeQueue, NoNativeQueue, page_error, who
from .execution_records import FINAL, ID_RE
from .execution_takeover import ExecutionTakeOvers
from .inputs import InputMissing, get_inputs, input_path, put_inputs
from .names import ENVIRONMENT_NAME, TEMPLATE_NAME
from .records import ExecutionExtra, ExecutionRecord, ExecutionSummary, Manifest
from .store import DIGEST_RE
from .templates import Template, now
from .webhooks import pending as pending_webhook

MANIFESTS_KEPT = 16  # served versions' manifests kept per process (one per endpoint and version)
# Other modules import these from here; they live where they change (core/execution_*.py).
__all__ = ["ExecutionService", "ExecutionNotFound", "NotYourExecution", "OutputInvalid", "CANCEL_PREFIX", "FINAL",
           "ID_RE", "OUTPUT_SUBFOLDER", "PREVIEW", "RESUMABLE", "FAILURE_TITLES", "NativeQueue", "NoNativeQueue",
           "page_error", "new_id", "who"]


def new_id(instance: str = "") -> str:
    """<UTC time to the microsecond>-<8 random hex digits>[-<instance id of the ComfyUI that made it>]."""
    made = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f") + "-" + uuid.uuid4().hex[:8]
    return f"{made}-{instance}" if instance else made


def is_async(manifest: Manifest) -> bool:
    """Whether the version's endpoint takes runs asynchronously (SageMaker async: its result lands in S3)."""
    endpoint = manifest.get("endpoint")
    return isinstance(endpoint, dict) and endpoint.get("kind") == "sagemaker" and endpoint.get("mode") == "async"


class ExecutionService(ExecutionTakeOvers):
    """Every face's runs: started here, followed, cancelled and taken over through its bases."""

    @functools.cached_property
    def sweeper(self) -> followers.Sweeper:
        """The sweep that finds the runs of followers that died (core/followers.py); it runs once its owner starts
        it. A designer's takes over or fails anyone's; an artist's only its own instance's."""
        return followers.Sweeper(self.store, self.follower, self.take_over,
                                 lambda f: self.role == "designer" or f.startswith(self.owner.instance + "-"))

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
