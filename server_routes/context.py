"""What the routes share: facts about this ComfyUI (plain data) and the configuration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..core import config as config_mod
from ..core.analysis import NodeCatalog
from ..core.config import Config
from ..core.errors import ConfigInvalid
from ..services import Services


@dataclass(frozen=True)
class ComfyFacts:
    """ComfyUI facts, gathered by the ComfyUI face so nothing below imports ComfyUI."""

    version: str
    listen: tuple[str, ...]
    config_dir: Path
    input_dir: Path
    output_dir: Path
    extension_dir: Path
    custom_node_dirs: tuple[str, ...] = ()
    # Called per request: ComfyUI's folder registry can change while it runs.
    model_folders: Callable[[], dict] = dict
    catalog: NodeCatalog | None = None


@dataclass
class Context:
    facts: ComfyFacts
    config_error: str | None = None
    _config: Config | None = field(default=None, repr=False)
    _services: Services | None = field(default=None, repr=False)

    @classmethod
    def load(cls, facts: ComfyFacts) -> Context:
        ctx = cls(facts)
        try:
            ctx._config = config_mod.load(facts.config_dir)
        except ConfigInvalid as err:
            ctx.config_error = err.message
        return ctx

    @property
    def services(self) -> Services:
        """The services (store, templates, ...); ConfigInvalid if the configuration is broken."""
        if self._services is None:
            self._services = Services(self.config)
        return self._services

    @property
    def config(self) -> Config:
        """The configuration; ConfigInvalid (500, saying what is wrong) if it is broken."""
        if self._config is None:
            raise ConfigInvalid(self.config_error or "configuration not loaded")
        return self._config

    def config_or_default(self) -> Config:
        """For the guard: a broken file must not open the door, so fall back to the defaults
        (loopback only), with the token from the environment if set."""
        return self._config or config_mod.load(None)
