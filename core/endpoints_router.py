"""Every endpoint, whichever kind: the routing policy above the providers (local workers, SageMaker).

An environment's endpoint config names its kind; the router makes that kind's provider on first use and finds
an endpoint by asking the providers in turn. A provider this configuration cannot even make (AWS not
configured: EndpointsNotConfigured) has made no endpoint; one that cannot answer now (AWS unreachable) is said
so, and never hides the others.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .endpoints import EndpointNotFound, Endpoints, EndpointsNotConfigured
from .errors import SageMakerError
from .records import EndpointConfig, EndpointView, Manifest
from .worker_contract import Invocation, WorkerEvent, WorkerResult

SHARED = "shared"  # the team's local endpoints that other ComfyUIs run (local/shared_endpoints.py): asked last

if TYPE_CHECKING:
    from .costs import Span


class EndpointsRouter(Endpoints):
    """`providers` makes each kind's provider; the `listed` kinds are asked even before first use (SageMaker
    when the store is S3). Providers are asked in the order given: this ComfyUI's own endpoints first, the
    shared ones of other ComfyUIs (SHARED) last, so an environment runs on a shared endpoint only when this
    ComfyUI has none."""

    kind = "any"

    def __init__(self, providers: dict[str, Callable[[], Endpoints]], listed: tuple[str, ...] = ("local",)):
        self._factories = providers
        self._listed = listed
        self._made: dict[str, Endpoints] = {}

    def provider(self, kind: str) -> Endpoints:
        if kind not in self._made:
            if kind not in self._factories:
                raise SageMakerError(f"{kind} endpoints are not available in this configuration")
            self._made[kind] = self._factories[kind]()
        return self._made[kind]

    def _made_providers(self) -> builtins.list[Endpoints]:
        return [self.provider(k) for k in self._factories if k in self._listed or k in self._made]

    def stop_listening(self) -> None:
        """The made providers stop listening for this process (SageMaker's notices queue); runs in flight go on."""
        for provider in list(self._made.values()):
            provider.stop_listening()

    def forget(self) -> None:
        for provider in list(self._made.values()):
            provider.forget()

    def _owner(self, name: str, known: bool = False) -> Endpoints:
        """The provider whose endpoint `name` is; `known`: from what each keeps for runs (Endpoints.known)."""
        unavailable = None
        for p in self._made_providers():
            try:
                p.known(name) if known else p.get(name)
                return p
            except (EndpointNotFound, EndpointsNotConfigured):  # not configured: no endpoint of that kind is ours
                continue
            except SageMakerError as err:  # that provider cannot answer now (AWS unreachable)
                unavailable = err
        if unavailable is not None:
            raise unavailable
        raise EndpointNotFound(f"no endpoint runs environment {name!r}")

    def list(self) -> builtins.list[EndpointView]:
        return self.list_with_problems()[0]

    def list_with_problems(self) -> tuple[builtins.list[EndpointView], builtins.list[dict[str, str]]]:
        """Every endpoint of the providers that answer, and {kind, reason} for those that cannot: one
        unavailable provider never hides the others."""
        endpoints: builtins.list[EndpointView] = []
        problems: builtins.list[dict[str, str]] = []
        for kind in [k for k in self._factories if k in self._listed or k in self._made]:
            try:  # making it may fail too (local endpoints without a ComfyUI: the CLI's costs)
                endpoints += self.provider(kind).list()
            except SageMakerError as err:
                problems.append({"kind": kind, "reason": err.message})
        return endpoints, problems

    def usage(self, endpoints: builtins.list[EndpointView], start: datetime,
              end: datetime) -> dict[str, builtins.list[Span]]:
        """Each kind's history from its provider (the kinds of `endpoints`, which listing them made)."""
        found: dict[str, builtins.list[Span]] = {}
        for kind in {e["kind"] for e in endpoints}:
            try:  # another ComfyUI's shared endpoint is of kind local where no local provider can be made (CLI)
                provider = self.provider(kind)
            except SageMakerError:
                continue  # estimated from its view
            found.update(provider.usage([e for e in endpoints if e["kind"] == kind], start, end))
        return found

    def check(self, endpoint_config: EndpointConfig) -> None:
        """Before anything is written: can this configuration's provider deploy that kind at all?"""
        kind = endpoint_config["kind"]
        made_before = kind in self._made
        try:
            self.provider(kind).check_configured()
        except SageMakerError:
            if not made_before:  # a refused first try leaves no provider behind to be asked later
                self._made.pop(kind, None)
            raise

    def check_configured(self) -> None:
        """Each kind is checked when an environment asks for it (`check`)."""

    def get(self, name: str) -> EndpointView:
        return self._owner(name).get(name)

    def deploy(self, manifest: Manifest) -> EndpointView:
        return self._deploy(manifest, rollback=False)

    def rollback(self, manifest: Manifest) -> EndpointView:
        """Like deploy (an older version of another kind moves the endpoint), by the provider's rollback."""
        return self._deploy(manifest, rollback=True)

    def _deploy(self, manifest: Manifest, rollback: bool) -> EndpointView:
        endpoint = manifest.get("endpoint")
        if endpoint is None:  # environments deploy only what names an endpoint; said, not a TypeError
            raise SageMakerError(f"environment {manifest['name']} was published without an endpoint")
        kind = endpoint["kind"]
        if kind == "local" and endpoint.get("shared") is not False and (shared := self._shared_elsewhere(manifest)):
            return shared.rollback(manifest) if rollback else shared.deploy(manifest)
        for p in self._made_providers():  # a kind change moves the endpoint (never another ComfyUI's shared one)
            if p.kind not in (kind, SHARED):
                try:
                    p.delete(manifest["name"])
                except (EndpointNotFound, EndpointsNotConfigured):  # a provider that cannot work made no endpoint
                    pass
        provider = self.provider(kind)
        return provider.rollback(manifest) if rollback else provider.deploy(manifest)

    def _shared_elsewhere(self, manifest: Manifest) -> Endpoints | None:
        """The provider of another ComfyUI's shared endpoint of this environment, when this ComfyUI has no local
        endpoint of its own: a deploy there is that endpoint's redeploy, which its owner carries out (the team
        has one endpoint of an environment; only the Share switch's explicit false makes one of this ComfyUI's)."""
        if SHARED not in self._factories or self._owns_local(manifest["name"]):
            return None
        shared = self.provider(SHARED)
        try:
            shared.get(manifest["name"])
        except EndpointNotFound:
            return None
        return shared

    def _owns_local(self, name: str) -> bool:
        if "local" not in self._factories:
            return False
        try:
            self.provider("local").get(name)
            return True
        except SageMakerError:  # none here (EndpointNotFound), or local endpoints cannot be made here
            return False

    def delete(self, name: str) -> None:
        self._owner(name).delete(name)

    def stop(self, name: str) -> EndpointView:
        return self._owner(name).stop(name)

    def start(self, name: str) -> EndpointView:
        return self._owner(name).start(name)

    def logs(self, name: str, tail: int = 200, contains: str | None = None) -> str:
        return self._owner(name).logs(name, tail, contains)

    def known(self, name: str) -> EndpointView:
        return self._owner(name, known=True).known(name)

    def check_ready(self, name: str) -> EndpointView:
        return self._owner(name, known=True).check_ready(name)

    def invoke(self, name: str, body: Invocation, on_event: Callable[[WorkerEvent], None]) -> WorkerResult:
        return self._owner(name, known=True).invoke(name, body, on_event)

    def resume(self, name: str, execution_id: str, resume: dict[str, Any],
               on_event: Callable[[WorkerEvent], None]) -> WorkerResult:
        return self._owner(name).resume(name, execution_id, resume, on_event)

    def cancel(self, name: str, execution_id: str, token: str) -> None:
        self._owner(name).cancel(name, execution_id, token)

    def when_settled(self, name: str, done: Callable[[], None]) -> None:
        try:
            owner = self._owner(name)
        except SageMakerError:  # gone, or its provider cannot answer: nothing to wait for
            done()
            return
        owner.when_settled(name, done)

    def adopt(self) -> None:
        """The providers whose endpoints outlive this process (local workers) take them back."""
        for p in self._made_providers():
            p.adopt()

    def running(self, name: str) -> bool:
        try:
            return self.get(name)["state"] not in ("Deleted",)
        except EndpointNotFound:
            return False

    def state(self, name: str) -> str | None:
        try:
            return self.get(name)["state"]
        except EndpointNotFound:
            return None
        except SageMakerError as err:
            return f"unavailable: {err.message}"

    def remove(self, name: str) -> None:
        """For deleting an environment: its endpoint, wherever it runs. A provider this configuration
        cannot even make (AWS not configured) can have made no endpoint: skipped. One that fails (access
        denied, unreachable) stops the delete: an endpoint left running would be billed."""
        for provider in self._made_providers():
            try:
                provider.delete(name)
            except (EndpointNotFound, EndpointsNotConfigured):
                continue
