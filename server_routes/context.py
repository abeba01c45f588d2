"""What the routes share: facts about this ComfyUI (plain data), and the extension that owns its
configuration, services and lifetime (extension.py)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Protocol

from aiohttp import web

from ..core.config import Config
from ..core.endpoints import Endpoints
from ..core.host import ComfyHost
from ..core.host_facts import ComfyFacts, InterruptDoor
from ..core.local_supervisor import LocalSupervisor
from ..extension import Extension
from ..services import Services
from . import guard
from .event_gate import EventGate

__all__ = ["ComfyFacts", "ComfyHost", "Context", "RouteContext", "RouteFacts"]


class RouteFacts(Protocol):
    """What the shared handlers read of "this ComfyUI" (ComfyFacts; the gateway's has no ComfyUI)."""

    @property
    def listen(self) -> tuple[str, ...]: ...

    @property
    def version(self) -> str | None: ...

    @property
    def interrupt(self) -> InterruptDoor: ...

    def host_status(self) -> dict[str, str] | None: ...


class RouteContext(Protocol):
    """What every handler gets as `ctx`: a ComfyUI's Context, or the gateway's (gateway/app.py's
    GatewayContext). Handlers only ComfyUI serves (its panels) take the Context itself."""

    facts: RouteFacts
    missing_requirements: tuple[str, ...]  # what this Python lacks of our requirements (health says it)

    @property
    def config(self) -> Config:
        """The configuration that runs; ConfigInvalid (500, saying what is wrong) if it is broken."""
        ...

    @property
    def config_error(self) -> str | None:
        """Why no configuration could be read, while none could."""
        ...

    @property
    def services(self) -> Services: ...

    @property
    def services_made(self) -> bool:
        """Whether the services were made yet (nothing has run on them before)."""
        ...

    @property
    def shared(self) -> bool:
        """Whether several people act through this process with one role (ComfyUI's --multi-user, the
        gateway): then each changes only their own runs, whatever the role (core/identity.py's
        may_change_execution)."""
        ...

    def effective_config(self) -> Config:
        """The configuration the guard and the role policy apply: never a broken one."""
        ...

    def user(self, request: web.Request) -> str | None:
        """The user a request comes from, where several share this process; else None."""
        ...


class Context(RouteContext):
    """What a ComfyUI's routes share: its facts, the extension (configuration, services, lifetime) and the gate
    of its broadcasts."""

    def __init__(self, facts: ComfyFacts, providers: dict[str, Callable[[], Endpoints]] | None = None,
                 local: LocalSupervisor | None = None):
        """`providers` and `local`: the Extension's (tests: fakes)."""
        self.facts: ComfyFacts = facts
        self.missing_requirements: tuple[str, ...] = ()
        self.extension = Extension.load(facts, self._broadcast, providers=providers, local=local)

    def _broadcast(self, event: str, data: dict, sid: str | None = None) -> None:
        self.events.send(event, data, sid)

    @cached_property
    def events(self) -> EventGate:
        """The extension's broadcasts, through the one gate that knows who may receive them."""
        cfg = self.effective_config
        return EventGate(self.facts.send_event, lambda: guard.token_required(self.facts.listen, cfg().token))

    @property
    def services(self) -> Services:
        """The services (store, templates, ...); ConfigInvalid if the configuration is broken."""
        return self.extension.services

    @property
    def services_made(self) -> bool:
        return self.extension.services_made

    @property
    def config(self) -> Config:
        return self.extension.require_config()

    @property
    def config_error(self) -> str | None:
        return self.extension.config_error

    @property
    def applied(self) -> int:
        """Configurations applied since start-up."""
        return self.extension.applied

    def change_config(self, changes: object, replace: bool = False) -> Config:
        return self.extension.change_config(changes, replace)

    def reload_file(self) -> Config:
        return self.extension.reload_file()

    @property
    def host(self) -> ComfyHost:
        return self.extension.host

    @property
    def shared(self) -> bool:
        return self.facts.multi_user

    def user(self, request: web.Request) -> str | None:
        """The ComfyUI user of a request under --multi-user (ComfyUI's own `comfy-user` header), else None."""
        if not self.facts.multi_user:
            return None
        user = request.headers.get("comfy-user", "")
        return user[:64] if user else None

    def effective_config(self) -> Config:
        return self.extension.effective_config()
