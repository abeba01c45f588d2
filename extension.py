"""The extension over one ComfyUI's lifetime: the one owner of what outlives a request.

Shaped like aiohttp's Application (on_startup / on_cleanup): `start` once the routes are registered, `stop`
at ComfyUI's exit, `apply` when the Connect panel changes the configuration. It holds:
- the configuration that runs (or why none could be read: then a fail-safe one guards the door), and the
  services made from it (services.Services), replaced whole by each configuration applied;
- the local endpoints' owner (core/local_supervisor.py), made once: the services of every configuration are
  given this same one, so their workers, which outlive configurations and ComfyUI restarts, never change hands;
- the start-up work of each services that take over (re-adopting local endpoints and failing the runs a
  restart interrupted only once per process) and the maintenance schedule of a designer's ComfyUI (hourly:
  the template index, expired idempotency keys; daily: the execution retention), on whichever services run.

The routes (server_routes/) reach it through their Context; it knows nothing of HTTP.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from .core import config as config_mod
from .core.config import Config
from .core.endpoints import Endpoints
from .core.errors import ConfigInvalid
from .core.host import ComfyHost
from .core.host_facts import ComfyFacts
from .core.local_supervisor import LocalSupervisor
from .core.pages import Pages
from .services import Services, local_supervisor

log = logging.getLogger("comfyui_sagemaker")
MAINTENANCE_EVERY_S = 3600.0


class Extension:
    """`send_event(event, data, sid=None)` reaches the browsers; `providers` replaces every endpoint kind
    (tests: a fake) and `local` the owner of the local endpoints (tests: one over a fake)."""

    def __init__(self, facts: ComfyFacts, send_event: Callable[..., None] | None = None,
                 providers: dict[str, Callable[[], Endpoints]] | None = None, local: LocalSupervisor | None = None,
                 maintenance_every: float = MAINTENANCE_EVERY_S):
        self.facts = facts
        self.host = ComfyHost(facts)
        self._send = send_event or (lambda event, data, sid=None: None)
        self._providers = providers
        self.local = local or local_supervisor(facts.config_dir, self.host)
        # The pages that look at this ComfyUI, across configurations: while none does, the store is read
        # only for maintenance (core/pages.py).
        self.pages = Pages(facts.connected)
        self.maintenance_every = maintenance_every
        self.config: Config | None = None  # None while the configuration cannot be read
        self.config_error: str | None = None
        self.file_values: dict | None = None  # config.json's values as last read or written
        self.fail_safe: Config | None = None  # what guards the door while no configuration could be read
        self.applied = 0  # configurations applied since start-up
        self._services: Services | None = None
        self._lock = threading.Lock()  # the services are made, or replaced, one at a time
        self._changing = threading.Lock()  # configuration changes, in the order they are written
        self._started = False
        self._restart_done = False  # this process's start-up work (re-adopting, failing interrupted runs)
        self._stopping = threading.Event()
        self._maintenance: threading.Thread | None = None

    @classmethod
    def load(cls, facts: ComfyFacts, send_event: Callable[..., None] | None = None,
             providers: dict[str, Callable[[], Endpoints]] | None = None, local: LocalSupervisor | None = None,
             maintenance_every: float = MAINTENANCE_EVERY_S) -> Extension:
        """With the configuration as config.json and the environment give it; a broken one is said in the log
        and kept as `config_error`, and the fail-safe configuration guards the door until it is fixed."""
        ext = cls(facts, send_event, providers, local, maintenance_every)
        try:
            data = config_mod.file_values(facts.config_dir)
            ext.config = config_mod.build(data, config_mod.CONFIG_FILE, facts.config_dir)
            ext.file_values = data
        except ConfigInvalid as err:
            ext.config_error = err.message
            ext.fail_safe = config_mod.fail_safe()
            log.error("comfyui-sagemaker: the configuration cannot be read (%s); until it can, this ComfyUI has an "
                      "%s's rights and runs nothing on the store: fix %s, then press Reload the file in the Connect "
                      "panel (or restart ComfyUI)", err.message, ext.fail_safe.role,
                      Path(facts.config_dir) / config_mod.CONFIG_FILE)
        return ext

    # the configuration and its services

    def require_config(self) -> Config:
        """The configuration; ConfigInvalid (saying what is wrong) while it is broken."""
        if self.config is None:
            raise ConfigInvalid(self.config_error or "configuration not loaded")
        return self.config

    def effective_config(self) -> Config:
        """For the guard and the role policy: the configuration that runs or, while none could be read, the
        fail-safe one (an artist's rights, loopback only, the environment's token): a broken file never opens
        a door."""
        return self.config or self.fail_safe or config_mod.fail_safe()

    @property
    def services(self) -> Services:
        """The services of the configuration that runs, made on first use; ConfigInvalid while it is broken."""
        with self._lock:
            if self._services is None:
                self._services = self._make_services(self.require_config())
            return self._services

    @property
    def services_made(self) -> bool:
        return self._services is not None

    def _make_services(self, config: Config) -> Services:
        directory = self.facts.config_dir
        return Services(config, self.host, directory, self._send, reload_config=lambda: config_mod.load(directory),
                        local=self.local, providers=self._providers, pages=self.pages)

    def apply(self, config: Config) -> None:
        """Run with `config` from now on, without a restart: its services take over at once (the local endpoints
        with them); the old ones stop watching and maintaining, and what they have in flight (runs, uploads,
        endpoints) finishes on their store."""
        with self._lock:
            old, self._services = self._services, self._make_services(config)
            self.config, self.config_error = config, None
            self.applied += 1
            services = self._services
        if old is not None:
            old.close()
        if self._started:
            self._in_background(services)

    def change_config(self, changes: object, replace: bool = False) -> Config:
        """A change from the page: written to config.json, then run. One change at a time: the file's lock
        serialises writers across processes, this one keeps the order of applies that of the writes. The
        change is judged by the role that runs now (an artist's page cannot make it a designer's)."""
        with self._changing:
            data, cfg = config_mod.update(self.facts.config_dir, changes, replace,
                                          acting_role=self.effective_config().role, last_good=self.file_values)
            self.file_values = data
            self.apply(cfg)
        return cfg

    def reload_file(self) -> Config:
        """Run with config.json as it is now (after it was fixed or edited by hand): the file is the
        authority, so this may change the role either way. ConfigInvalid, and nothing changes, if it is
        still unreadable."""
        with self._changing:
            data = config_mod.file_values(self.facts.config_dir)
            cfg = config_mod.build(data, config_mod.CONFIG_FILE, self.facts.config_dir)
            self.file_values = data
            self.apply(cfg)
        return cfg

    # the lifetime

    def start(self, wait: bool = False) -> None:
        """ComfyUI has registered the routes: the start-up work of the services (in a thread of its own, off
        ComfyUI's start-up path; here and now if `wait`), and the maintenance schedule. Once."""
        if self._started:
            return
        self._started = True
        self._maintenance = threading.Thread(target=self._maintain, name="sagemaker-maintenance", daemon=True)
        self._maintenance.start()
        if self.config is None:  # the first configuration applied does the start-up work
            return
        services = self.services
        if wait:
            self._take_over(services)
        else:
            self._in_background(services)

    def stop(self) -> None:
        """ComfyUI exits (or a test ends): the schedule and the services' watchers stop. The local endpoints'
        workers run on, to be re-adopted at the next start."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        with self._lock:
            services = self._services
        if services is not None:
            services.close()
        if self._maintenance is not None and self._maintenance is not threading.current_thread():
            self._maintenance.join(timeout=5)

    def _in_background(self, services: Services) -> None:
        threading.Thread(target=self._take_over, args=(services,), name="sagemaker-start", daemon=True).start()

    def _take_over(self, services: Services) -> None:
        """The work of services that begin to run: temporary files killed processes left; at this process's
        first, the runs its previous life left in flight failed and the local endpoints re-adopted; the runs
        of followers that died taken over; the input watcher; the store watched for the other ComfyUIs'
        changes. A step that fails is logged, never raised: ComfyUI runs on, the sidebar shows what is wrong."""
        with self._lock:
            first, self._restart_done = not self._restart_done, True

        def watch() -> None:
            if services.watcher_enabled():
                services.input_watcher.start()

        steps: dict[str, Callable[[], object]] = {"sweeping temporary files": services.sweep}
        if first:  # a configuration applied while ComfyUI runs: no restart interrupted anything
            steps["failing this ComfyUI's interrupted executions"] = lambda: services.executions.fail_interrupted()
            steps["re-adopting local endpoints"] = lambda: services.endpoints.provider("local").adopt()
        steps |= {
            # Runs whose follower (a ComfyUI or gateway replica on the store) was killed: taken over or failed.
            "looking for runs whose follower stopped": lambda: services.executions.sweeper.start(),
            "starting the input watcher": watch,
            # Other ComfyUIs' changes on the store reach this one's browsers.
            "watching the store for changes": lambda: services.changes.start(services.changed_elsewhere),
        }
        for what, step in steps.items():
            if services.closed.is_set():  # replaced meanwhile: the new services do their own
                return
            try:
                step()
            except Exception:
                log.exception("comfyui-sagemaker: %s failed", what)

    def _maintain(self) -> None:
        """A designer's ComfyUI keeps the shared store tidy, starting an hour after start-up (no start-up work
        grows with the store): the template index checked against the templates themselves (hourly),
        idempotency keys past their 24 hours removed (hourly), runs of ComfyUIs that never came back expired past
        their endpoint's run time limit (hourly), execution records past their retention removed (daily)."""
        hours = 0
        while not self._stopping.wait(self.maintenance_every):
            hours += 1
            with self._lock:
                services = self._services
            if services is None or services.config.role != "designer":
                continue
            for what, due, step in (("rebuilding the template index", True, services.templates.reconcile),
                                    ("removing expired idempotency keys", True, services.idempotency.remove_expired),
                                    # once per store: then a list of one owner's runs in one state is one LIST
                                    ("indexing ended runs by owner", True, services.executions.records.index_by_owner),
                                    # the safety net under the follower sweep (core/run_expiry.py)
                                    ("expiring runs of ComfyUIs that did not come back", True, services.expire_runs),
                                    ("applying the execution retention", hours % 24 == 1, services.apply_retention)):
                if not due:
                    continue
                try:
                    step()
                except Exception:
                    log.exception("comfyui-sagemaker: %s failed", what)
