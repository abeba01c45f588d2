"""The composition root: builds the store and the services from the configuration.

Stores are made in stores.py, from the configuration (`make_store`) or a worker's manifest URI
(`split_manifest_uri`); the endpoint providers are made here; routes and the CLI get services from here
(`aws teardown` alone makes SageMaker endpoints from the stack's outputs). Code below still asks a
store's `kind` where folder and S3 differ in cost (read concurrency, the worker's ranged fetch).

What outlives one configuration (start-up work, the maintenance schedule, the local endpoints' owner) is the
Extension's (extension.py); the routing of endpoints is core/endpoints_router.py's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

from .core import retention
from .core.changes import ChangeFeed
from .core.config import Config
from .core.costs import Costs, recent_runs
from .core.endpoints import Endpoints
from .core.endpoints_router import SHARED, EndpointsRouter
from .core.environments import EndpointHooks, EnvironmentService, versions_of
from .core.errors import ConfigInvalid, NotFound, SageMakerError
from .core.execution_records import ExecutionRecords
from .core.executions import ExecutionService
from .core.fs.hashing import HashCache
from .core.fs.scratch import HIDDEN, Scratch
from .core.fs.scratch import sweep as sweep_temporary
from .core.host import Host
from .core.identity import Owner, display_name, instance_id
from .core.input_sync import InputSync
from .core.leases import Leases
from .core.local_supervisor import LocalSupervisor
from .core.models import ModelService
from .core.pages import Pages
from .core.proofs import Prover
from .core.shared_registry import SharedRegistry, Sharing
from .core.store import Store
from .core.tasks import TaskManager
from .core.template_executions import TemplateExecutions
from .core.templates import TemplateService
from .core.v2.assets import AssetService
from .core.v2.idempotency import Idempotency
from .core.v2.job_view import LiveJobs, Mount, job_json
from .core.v2.jobs_v2 import JobsV2
from .core.webhook_secret import WebhookSecret
from .core.webhooks import Webhooks
from .local.input_watcher import InputWatcher
from .stores import make_store, store_uri


def local_supervisor(state_dir: Path, host: Host | None) -> LocalSupervisor:
    """The owner of a process's local endpoints: worker subprocesses started from `host`'s ComfyUI, their
    state under `state_dir`."""

    def make(store_uri: Callable[[], str], on_change: Callable[[dict], None]) -> Endpoints:
        from .local.endpoints import LocalEndpoints

        if host is None:
            raise SageMakerError("local endpoints need a running ComfyUI")
        return LocalEndpoints(state_dir, store_uri, host.worker_runtime(), on_change=on_change,
                              sharing=supervisor.sharing, prover=supervisor.prover)

    supervisor = LocalSupervisor(make)
    return supervisor


class Services:
    """Everything the routes and the CLI call, made once per configuration.

    `host` is the ComfyUI the extension runs in (snapshot, models, analysis);
    `state_dir` holds local caches; `send_event(event, data)` reaches browsers; `reload_config` reads the
    configuration as it is now (settings that apply without a restart). `local` owns the local endpoints
    beyond these services (the Extension's, the same for every configuration; else these services' own);
    `providers`, every endpoint kind instead of the configuration's (tests: a fake). `pages`, the pages that
    look at this ComfyUI (core/pages.py): while none does, the loops that only serve them read nothing and the
    others read at their slow pace (None: a process without pages, always at full pace); `wait(event, s)`,
    their sleep (tests: a fake clock's).
    """

    def __init__(self, config: Config, host: Host | None = None, state_dir: Path | None = None,
                 send_event: Callable[..., None] | None = None, owner: Owner | None = None,
                 makes_webhook_secret: bool = True, follow_ttl: float | None = None,
                 reload_config: Callable[[], Config] | None = None, local: LocalSupervisor | None = None,
                 providers: dict[str, Callable[[], Endpoints]] | None = None, pages: Pages | None = None,
                 wait: Callable[[threading.Event, float], object] | None = None):
        self.config = config
        self.pages = pages
        self._wait = wait
        self.follow_ttl = follow_ttl  # how long a follower lease of runs lives unrenewed (core/followers.py)
        self.host = host
        self._owner = owner  # who runs are made by, when not this ComfyUI's instance (the gateway)
        self.state_dir = Path(state_dir) if state_dir else Path(config.store_path).parent
        # send_event(event, data, sid=None): to one browser (sid) or all of them.
        self._send = send_event or (lambda event, data, sid=None: None)
        self.reload_config = reload_config
        self.closed = threading.Event()  # set when another configuration's services replace these
        self._providers = providers
        # From now on the local endpoints deploy from this configuration's store and tell these services.
        self.local = local or local_supervisor(self.state_dir, host)
        self.local.serve(store_uri(config), lambda endpoint: self.send_event("sagemaker.endpoint", endpoint),
                         lambda: self.sharing, lambda: self.prover)
        # A ComfyUI makes its webhook secret on first use; the gateway's replicas are given one (one each would
        # not do): core/webhook_secret.py.
        self.makes_webhook_secret = makes_webhook_secret

    def _made(self, name: str) -> bool:
        """Whether the service `name` (a cached property) was made: closing touches only what was."""
        return name in self.__dict__

    def close(self) -> None:
        """Replaced by another configuration's services: stop watching and maintaining; what is in flight
        (runs, uploads already started, endpoints) finishes on this store."""
        self.closed.set()
        if self._made("executions"):  # its runs in flight go on; finding others' orphans is the new one's
            self.executions.sweeper.stop()
        stops = {"input_watcher": lambda: self.input_watcher.stop(), "changes": lambda: self.changes.stop()}
        for name, stop in stops.items():
            if self._made(name):
                try:
                    stop()
                except Exception:
                    logging.getLogger("comfyui_sagemaker").exception("comfyui-sagemaker: stopping %s failed", name)
        if self._made("endpoints"):  # SageMaker's notices queue (aws/notifications.py) goes; runs are polled for
            try:
                self.endpoints.stop_listening()
            except Exception:
                logging.getLogger("comfyui_sagemaker").exception("comfyui-sagemaker: closing the endpoints failed")
        if self._made("input_sync"):
            threading.Thread(target=self.input_sync.close, name="sagemaker-input-sync-close", daemon=True).start()

    def drain_webhooks(self, seconds: float) -> int:
        """Let the webhook deliveries under way finish within `seconds`; how many are still going (none if no
        webhook was ever sent from here)."""
        return self.webhooks.drain(seconds) if self._made("webhooks") else 0

    @cached_property
    def store(self) -> Store:
        return make_store(self.config)

    @cached_property
    def changes(self) -> ChangeFeed:
        return ChangeFeed(self.store, self.owner.name, self.pages, self._wait)

    @cached_property
    def leases(self) -> Leases:
        return Leases(self.store, self.owner)

    # What changes a shared list, besides telling this ComfyUI's browsers, marks it for the other ComfyUIs.
    MARKS = {"sagemaker.endpoint": "endpoints", "sagemaker.execution": "executions"}

    def send_event(self, event: str, data: dict, sid: str | None = None) -> None:
        self._send(event, data, sid)
        if sid is None and event in self.MARKS:
            self.changes.touch(self.MARKS[event])

    def changed_elsewhere(self, collection: str) -> None:
        """Another ComfyUI changed a shared list (core/changes.py): this one's browsers reload it, and an endpoint
        changed there is described afresh for the next run here (Endpoints.known)."""
        if collection == "endpoints" and self._made("endpoints"):
            self.endpoints.forget()
        self.send_event("sagemaker.changed", {"collection": collection})

    @cached_property
    def templates(self) -> TemplateService:
        host = self.host  # a ComfyUI's registry narrows parameters to their inputs (core/parameter_limits.py)
        return TemplateService(self.store, lambda name: bool(versions_of(self.store, name)),
                               lambda name: versions_of(self.store, name),
                               host.node_info if host is not None else None)

    @cached_property
    def prover(self) -> Prover:
        """Runs the proofs of an environment's templates on a new version before traffic moves to it."""
        return Prover(self.store, self.templates)

    @cached_property
    def tasks(self) -> TaskManager:
        # the event keeps its name "sagemaker.job" (a wire format pages and scripts listen for)
        return TaskManager(on_event=lambda task: self.send_event("sagemaker.job", task))

    @cached_property
    def hash_cache(self) -> HashCache:
        return HashCache(self.state_dir / "hash-cache.json")

    @cached_property
    def environments(self) -> EnvironmentService:
        if self.host is None:
            raise SageMakerError("environments need a running ComfyUI (its nodes and models)")
        e = self.endpoints
        hooks = EndpointHooks(running=e.running, deploy=e.deploy, remove=e.remove, state=e.state, check=e.check,
                              view=e.get, rollback=e.rollback, settled=e.when_settled)
        return EnvironmentService(self.store, self.templates, self.host, self.tasks, self.hash_cache,
                                  self.config.max_instances, hooks, leases=self.leases,
                                  allowed_instance_types=self.config.allowed_instance_types,
                                  changed=lambda: self.changes.touch("environments"), temp=self.scratch,
                                  owner=self.owner)

    @cached_property
    def owner(self) -> Owner:
        """This ComfyUI on the store: its stable id and display name."""
        return self._owner or Owner(instance_id(self.state_dir), display_name(self.config.display_name))

    @property
    def has_input_folder(self) -> bool:
        return self.host is not None and self.host.input_dir() is not None

    @cached_property
    def executions(self) -> ExecutionService:
        synced = self.input_sync.digest if self.has_input_folder else (lambda name: None)
        svc = ExecutionService(self.store, self.templates, self.environments, self.endpoints, self.host,
                               self.hash_cache, self.send_event, synced=synced, owner=self.owner,
                               native=self.host.native_queue() if self.host is not None else None,
                               webhooks=self.webhooks, role=self.config.role, temp=self.scratch,
                               **({"follow_ttl": self.follow_ttl} if self.follow_ttl else {}))
        svc.listeners.append(self.live_jobs)
        if self.pages is not None:
            svc.sweeper.pace(self.pages.looking, self._wait)
        return svc

    # the run APIs' other faces: webhooks, assets, Comfy API v2 jobs

    @cached_property
    def webhooks(self) -> Webhooks:
        cfg = self.live_config
        return Webhooks(self.store, ExecutionRecords(self.store), self.webhook_body,
                        WebhookSecret(self.state_dir, make=self.makes_webhook_secret),
                        allowed_hosts=lambda: cfg().webhook_allowed_hosts,
                        retry_seconds=lambda: cfg().webhook_retry_seconds,
                        timeout=lambda: cfg().webhook_timeout_seconds)

    def webhook_body(self, record: dict) -> dict:
        """What a run's webhook carries: the v2 Job for a v2 job, else the execution record as the template
        API shows it."""
        v2 = record.get("v2")
        if record.get("api") == "v2" and isinstance(v2, dict):
            mount = Mount(str(v2.get("origin") or ""), str(v2.get("prefix") or ""))
            return {"type": "job.ended", "job": job_json(record, mount, self.config.execution_retention_days)}
        shown = {k: v for k, v in record.items() if k not in ("client_id", "inputs")}
        return {"type": "execution.ended", "execution": shown}

    @cached_property
    def live_jobs(self) -> LiveJobs:
        return LiveJobs()

    @cached_property
    def assets(self) -> AssetService:
        def read_execution(execution_id: str) -> dict | None:
            try:
                return self.executions.get(execution_id, localise=False)
            except NotFound:
                return None

        return AssetService(self.store, lambda user: self.executions.owner_for(user), read_execution)

    @cached_property
    def idempotency(self) -> Idempotency:
        return Idempotency(self.store)

    @cached_property
    def template_executions(self) -> TemplateExecutions:
        return TemplateExecutions(self.templates, self.store, lambda: self.host.input_dir() if self.host else None,
                            lambda: self.assets, self.scratch)

    @cached_property
    def jobs_v2(self) -> JobsV2:
        return JobsV2(self.executions, self.assets, self.template_executions, self.idempotency, self.live_jobs,
                      self.store, lambda: self.config.execution_retention_days)

    def apply_retention(self) -> int:
        """Execution records older than execution_retention_days, then the blobs nothing refers to any more
        (core/retention.py); a designer's job. The number of records removed."""
        if self.config.role != "designer":
            return 0
        days = self.config.execution_retention_days
        removed = self.executions.apply_retention(days)
        retention.sweep_blobs(self.store, retention_days=days)
        return removed

    def expire_runs(self) -> int:
        """Runs left in flight by ComfyUIs that never came back, past their endpoint's run time limit, failed with
        the reason (core/run_expiry.py); a designer's job. The number expired."""
        if self.config.role != "designer":
            return 0
        return self.executions.expire_abandoned()

    @cached_property
    def input_sync(self) -> InputSync:
        if self.host is None:
            raise SageMakerError("input sync needs a running ComfyUI (its input folder)")
        # One index per store: a ComfyUI moved to another store (Connect panel) sends its inputs there too.
        uri = store_uri(self.config)
        index = "input-index.json" if self.config.store == "folder" else \
            f"input-index-{hashlib.sha256(uri.encode()).hexdigest()[:12]}.json"
        return InputSync(self.store, self.host.input_dir(), self.hash_cache, self.state_dir / index,
                         on_change=lambda entry: self.send_event("sagemaker.input", entry),
                         publish_as=self.owner.instance)

    @cached_property
    def models(self) -> ModelService:
        if self.host is None:
            raise SageMakerError("model management needs a running ComfyUI (its model folders)")
        return ModelService(self.host.model_folders, self.hash_cache, self.tasks,
                            lambda: list(self.live_config().download_allowed_hosts))

    @cached_property
    def scratch(self) -> Scratch:
        """Our folder for temporary files (uploads being received, packs being made, blobs being checked)."""
        return Scratch(self.state_dir / "tmp")

    def sweep(self) -> list[str]:
        """Temporary files killed processes left, whatever their age once their writer is known dead
        (core/fs/scratch.py): in the store, our scratch folder, our state, the endpoints' state, ComfyUI's
        input, output and model folders (S3 multipart leftovers are the bucket's lifecycle rule's job)."""
        from .core.execution_outputs import OUTPUT_SUBFOLDER, OUTPUT_TEMP
        from .core.inputs import INPUT_TEMPS

        removed = self.store.sweep()
        removed += self.scratch.sweep()
        removed += sweep_temporary(self.state_dir, (HIDDEN,), unknown_after=None)
        for endpoint in (self.state_dir / "endpoints").glob("*/"):  # their state.json, not their workers' trees
            removed += sweep_temporary(endpoint, (HIDDEN,), unknown_after=None)
        if self.host is not None and self.host.input_dir() is not None:
            removed += sweep_temporary(self.host.input_dir(), INPUT_TEMPS)
            removed += sweep_temporary(self.host.output_dir() / OUTPUT_SUBFOLDER, (OUTPUT_TEMP,), recursive=True)
            removed += self.models.sweep()
        return removed

    def live_config(self) -> Config:
        """The configuration as it is now on disk (for settings that apply without a restart); the one
        these services run with while the file is broken."""
        try:
            return self.reload_config() if self.reload_config else self.config
        except ConfigInvalid:
            return self.config

    @cached_property
    def input_watcher(self) -> InputWatcher:
        return InputWatcher(self.input_sync)

    def watcher_enabled(self) -> bool:
        try:
            return bool(json.loads((self.state_dir / "input-sync.json").read_text()).get("enabled", True))
        except (OSError, ValueError):
            return True

    def set_watcher(self, enabled: bool) -> None:
        """Turn the input watcher on or off, and remember it across restarts."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "input-sync.json").write_text(json.dumps({"enabled": enabled}))
        if enabled and not self.input_watcher.running:
            self.input_watcher.start()
        elif not enabled and self.input_watcher.running:
            self.input_watcher.stop()

    @cached_property
    def costs(self) -> Costs:
        """What runs and what it costs, computed when asked (core/costs.py)."""

        return Costs(self.config.region, self.store.kind, self.endpoints.list_with_problems, self.endpoints.usage,
                     lambda limit: recent_runs(self.store, limit), self.store.sizes)

    @cached_property
    def sharing(self) -> Sharing:
        """This configuration's shared local endpoints (core/shared_registry.py): the store's registry, who this
        ComfyUI is, the address its shared workers listen on."""
        return Sharing(SharedRegistry(self.store), self.owner.instance, self.owner.name, self.config.share_host)

    def shared_endpoints(self) -> Endpoints:
        from .local.shared_endpoints import SharedEndpoints

        return SharedEndpoints(self.sharing.registry, self.owner.instance, self.owner.name,
                               on_change=lambda endpoint: self.send_event("sagemaker.endpoint", endpoint))

    @cached_property
    def endpoints(self) -> EndpointsRouter:
        if self._providers is not None:
            return EndpointsRouter(self._providers, tuple(self._providers))

        def sagemaker() -> Endpoints:
            from .aws.endpoint_logs import LOG_RETENTION_DAYS
            from .aws.sagemaker_endpoints import SageMakerEndpoints

            c = self.config
            return SageMakerEndpoints(store_uri(c), c.sagemaker_role_arn, c.worker_image_uri, c.region,
                                      on_change=lambda endpoint: self.send_event("sagemaker.endpoint", endpoint),
                                      store=self.store if c.store == "s3" else None, sse=c.s3_sse,
                                      kms_key_id=c.s3_kms_key_id, log_retention_days=LOG_RETENTION_DAYS,
                                      max_instances=c.max_instances, allowed_instance_types=c.allowed_instance_types,
                                      prover=lambda: self.prover,
                                      notification_topic=c.notification_topic_arn, instance=self.owner.instance)

        listed = ("local", "sagemaker", SHARED) if self.config.store == "s3" else ("local", SHARED)
        return EndpointsRouter({"local": self.local.provider, "sagemaker": sagemaker, SHARED: self.shared_endpoints},
                               listed)
