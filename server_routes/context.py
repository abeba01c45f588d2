"""What the routes share: facts about this ComfyUI (plain data) and the configuration."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ..core import config as config_mod
from ..core.config import Config
from ..core.errors import ConfigInvalid
from ..core.host import ComfyHost
from ..core.host_facts import ComfyFacts
from ..services import Services
from . import guard
from .event_gate import EventGate


@dataclass
class Context:
    facts: ComfyFacts
    config_error: str | None = None
    missing_requirements: tuple[str, ...] = ()
    _config: Config | None = field(default=None, repr=False)
    _services: Services | None = field(default=None, repr=False)
    # Called with the context when new services take over (server_routes starts their background work).
    on_services: Callable[[Context], None] | None = field(default=None, repr=False)
    _applying: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _changing: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _file_values: dict | None = field(default=None, repr=False)  # config.json's values as last read or written
    _fail_safe: Config | None = field(default=None, repr=False)  # what runs while no configuration could be read
    _local_endpoints: object = field(default=None, repr=False)
    applied: int = 0  # configurations applied since start-up
    background_ran: bool = False  # the start-up work (adopting endpoints, failing interrupted runs) is done

    @classmethod
    def load(cls, facts: ComfyFacts) -> Context:
        ctx = cls(facts)
        try:
            data = config_mod.file_values(facts.config_dir)
            ctx._config = config_mod.build(data, config_mod.CONFIG_FILE, facts.config_dir)
            ctx._file_values = data
        except ConfigInvalid as err:
            ctx.config_error = err.message
            ctx._fail_safe = config_mod.fail_safe()
            logging.getLogger("comfyui_sagemaker").error(
                "comfyui-sagemaker: the configuration cannot be read (%s); until it can, this ComfyUI has an %s's "
                "rights and runs nothing on the store: fix %s, then press Reload the file in the Connect panel (or "
                "restart ComfyUI)", err.message, ctx._fail_safe.role, Path(facts.config_dir) / config_mod.CONFIG_FILE)
        return ctx

    @cached_property
    def events(self) -> EventGate:
        """The extension's broadcasts, through the one gate that knows who may receive them."""
        cfg = self.effective_config
        return EventGate(self.facts.send_event, lambda: guard.token_required(self.facts.listen, cfg().token))

    @property
    def services(self) -> Services:
        """The services (store, templates, ...); ConfigInvalid if the configuration is broken."""
        if self._services is None:
            services = Services(self.config, ComfyHost(self.facts), self.facts.config_dir, self.events.send)
            services.local_endpoints_from = self._local_endpoints
            self._services = services
            self._services.reload_config = lambda: config_mod.load(self.facts.config_dir)
        return self._services

    def apply(self, config: Config) -> None:
        """Run with another configuration from now on, without a restart: new services are made on
        first use; the old ones stop watching and maintaining, and what they have in flight (runs,
        uploads, endpoints) finishes on their store."""
        with self._applying:
            old = self._services
            if old is not None:
                self._local_endpoints = old.made_local_endpoints() or self._local_endpoints
            self._config, self.config_error, self._services = config, None, None
            self.applied += 1
            if old is not None:
                old.close()
            if self.on_services is not None:
                self.on_services(self)

    def change_config(self, changes: object, replace: bool = False) -> Config:
        """A change from the page: written to config.json, then run. One change at a time: the file's lock
        serialises writers across processes, this one keeps the order of applies that of the writes. The
        change is judged by the role that runs now (an artist's page cannot make it a designer's)."""
        with self._changing:
            data, cfg = config_mod.update(self.facts.config_dir, changes, replace,
                                          acting_role=self.effective_config().role, last_good=self._file_values)
            self._file_values = data
            self.apply(cfg)
        return cfg

    def reload_file(self) -> Config:
        """Run with config.json as it is now (after it was fixed or edited by hand): the file is the
        authority, so this may change the role either way. ConfigInvalid, and nothing changes, if it is
        still unreadable."""
        with self._changing:
            data = config_mod.file_values(self.facts.config_dir)
            cfg = config_mod.build(data, config_mod.CONFIG_FILE, self.facts.config_dir)
            self._file_values = data
            self.apply(cfg)
        return cfg

    @property
    def host(self) -> ComfyHost:
        return ComfyHost(self.facts)

    @property
    def config(self) -> Config:
        """The configuration; ConfigInvalid (500, saying what is wrong) if it is broken."""
        if self._config is None:
            raise ConfigInvalid(self.config_error or "configuration not loaded")
        return self._config

    @property
    def shared(self) -> bool:
        """Whether several people act through this ComfyUI with one role (--multi-user): then each changes
        only their own runs, whatever the role (core/identity.py's may_change_run)."""
        return self.facts.multi_user

    def user(self, request) -> str | None:
        """The ComfyUI user of a request under --multi-user (ComfyUI's own `comfy-user` header), else None."""
        if not self.facts.multi_user:
            return None
        user = request.headers.get("comfy-user", "")
        return user[:64] if user else None

    def effective_config(self) -> Config:
        """For the guard and the role policy: the configuration that runs or, while none could be read, the
        fail-safe one (an artist's rights, loopback only, the environment's token): a broken file never opens
        a door."""
        return self._config or self._fail_safe or config_mod.fail_safe()
