"""The Endpoints seam: the running service of an environment, local or on SageMaker.

An endpoint is named after its environment (case-insensitive) and has a
state: Creating -> InService, Updating -> InService, Failed (with a reason),
Deleting -> gone, and Stopped (ours, not one of SageMaker's EndpointStatus
values: the endpoint's workers or instances are gone, what it runs is kept,
and start brings it back; a local endpoint is Stopping while its worker
exits). Implementations: `local.endpoints.LocalEndpoints` (worker
subprocesses on this machine) and `aws.sagemaker_endpoints` (SageMaker).
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .errors import Conflict, NotFound, SageMakerError
from .records import EndpointView, Manifest
from .worker_contract import Invocation, WorkerEvent, WorkerResult

if TYPE_CHECKING:
    from .costs import Span

# States in which an endpoint takes invocations. SageMaker's serving ones (aws/endpoint_states.py;
# a test keeps the two equal): the current config keeps serving through an update or maintenance.
READY_STATES = ("InService", "Updating", "SystemUpdating", "RollingBack", "UpdateRollbackFailed")
STOPPED = "Stopped"
STOPPING = "Stopping"  # ours too: its workers are being stopped; Stopped follows (Start is offered only then)


class EndpointNotFound(NotFound):
    """No endpoint runs this environment."""

    code = "endpoint_not_found"


class EndpointNotReady(SageMakerError):
    """The endpoint exists but cannot take work now (Creating, Failed, Deleting)."""

    code = "endpoint_not_ready"


class EndpointBusy(Conflict):
    """The endpoint is in the middle of something (creating, updating, maintenance, deleting) and
    cannot take this change now; the message says what it is doing."""

    code = "endpoint_busy"


class EndpointStateConflict(Conflict):
    """The endpoint is not in a state that allows this (start a running one, stop a stopped one)."""

    code = "endpoint_state"


class InvocationFailed(SageMakerError):
    """The endpoint did not return a result (worker died, connection lost, timeout)."""

    code = "invocation_failed"


class RunUnknown(InvocationFailed):
    """The endpoint no longer has the run a follower asks for (its worker was restarted or stopped, or kept the
    result past its limit): its result is lost."""

    code = "run_unknown"


class EndpointsNotConfigured(SageMakerError):
    """This configuration cannot make that kind of endpoint at all (AWS's prerequisites missing): such a
    provider has made no endpoint, so asking it for one finds none."""

    code = "endpoints_not_configured"


class Endpoints(ABC):
    kind: str

    @abstractmethod
    def list(self) -> list[EndpointView]:
        """Every endpoint: {name, kind, state, environment, version, reason?, url?, instances?}."""

    @abstractmethod
    def get(self, name: str) -> EndpointView:
        """One endpoint's description; EndpointNotFound."""

    @abstractmethod
    def deploy(self, manifest: Manifest) -> EndpointView:
        """Create the endpoint of `manifest`'s environment, or update it to this version. Returns at once
        (state Creating or Updating); progress arrives as state changes."""

    def rollback(self, manifest: Manifest) -> EndpointView:
        """Serve `manifest`, an older version of the endpoint's environment, again, reusing what was kept of it
        (core/environments.py's rollback). Nothing is uploaded: the version's blobs are in the store. By
        default a deploy of that version (a local worker restarts on it; its blobs are in the worker cache)."""
        return self.deploy(manifest)

    @abstractmethod
    def delete(self, name: str) -> None:
        """Remove the endpoint and everything made for it; idempotent; EndpointNotFound if there is none."""

    @abstractmethod
    def logs(self, name: str, tail: int = 200, contains: str | None = None) -> str:
        """The last `tail` lines of the endpoint's logs (only lines holding `contains`, if given)."""

    @abstractmethod
    def invoke(self, name: str, body: Invocation, on_event: Callable[[WorkerEvent], None]) -> WorkerResult:
        """Run one prompt (the worker's /invocations body) and return its result, calling `on_event`
        for each of ComfyUI's events as they arrive. Blocks: call it off the event loop.
        EndpointNotReady before anything is sent; InvocationFailed if no result comes back."""

    def resume(self, name: str, execution_id: str, resume: dict[str, Any],
               on_event: Callable[[WorkerEvent], None]) -> WorkerResult:
        """Follow a run an invocation started and its process stopped following (core/followers.py): `resume`
        is what that invocation said in its `sagemaker.resumable` event (an endpoint that can answer for its runs
        after their invoker is gone says it once it has accepted the run: SageMaker's async endpoints, whose
        results land in S3; local endpoints, whose worker keeps each result a while). Like invoke's answer,
        waiting while the run goes on; RunUnknown when the endpoint no longer has the run (its result is lost),
        InvocationFailed where it cannot answer for a run to anyone but its invoker (a real-time stream)."""
        raise InvocationFailed(f"{self.kind} endpoints answer a run only to the process that invoked it")

    def stop(self, name: str) -> EndpointView:
        """Stop the endpoint without removing what it runs (billing stops); its view, state Stopped.
        EndpointNotFound; EndpointStateConflict if it is stopped already."""
        raise EndpointStateConflict(f"{self.kind} endpoints cannot be stopped")

    def start(self, name: str) -> EndpointView:
        """Start a stopped endpoint again; returns at once (state Creating), like deploy.
        EndpointNotFound; EndpointStateConflict unless it is stopped."""
        raise EndpointStateConflict(f"{self.kind} endpoints cannot be started")

    def cancel(self, name: str, execution_id: str, token: str) -> None:
        """Stop a run this process invoked, with its cancel token (core/cancel_tokens.py); best effort, never
        raises for a run the endpoint no longer has. Nothing by default: the run goes on to its end."""
        return None

    def stop_listening(self) -> None:
        """This process's services close: stop receiving what the provider keeps for it (SageMaker's async
        notices queue, aws/notifications.py). Runs in flight go on. Nothing by default."""
        return None

    def usage(self, endpoints: builtins.list[EndpointView], start: datetime,
              end: datetime) -> dict[str, builtins.list[Span]]:
        """The instances each of `endpoints` (views of this kind) ran between `start` and `end`, by name, from
        the history the provider keeps (core/costs.py). None kept by default: an endpoint missing from the
        answer is estimated from its view. SageMakerError if the history cannot be read now."""
        return {}

    def check_configured(self) -> None:
        """Before anything is written: EndpointsNotConfigured (or another SageMakerError) if this configuration
        cannot deploy this kind at all. Nothing by default: a kind that needs nothing."""
        return None

    def adopt(self) -> None:
        """After a restart of this process: take back the endpoints whose workers outlived it (or start them
        again). Nothing by default: a kind whose endpoints live elsewhere has nothing to take back."""
        return None

    def when_settled(self, name: str, done: Callable[[], None]) -> None:
        """Call `done()` once the deploy of the endpoint under way has settled (ready, or failed and said so);
        the environment's lease is held until then. At once by default: a kind whose deploy's answer ends it."""
        done()

    def known(self, name: str) -> EndpointView:
        """The endpoint's view as a run needs it (its state, the version it serves): `get` by default; a provider
        whose `get` costs requests answers from what it keeps per endpoint (aws/sagemaker_endpoints.py)."""
        return self.get(name)

    def check_ready(self, name: str) -> EndpointView:
        return self.check_serving(self.known(name))

    def forget(self) -> None:
        """The endpoints changed elsewhere (another ComfyUI's change notice): what `known` kept is dropped."""
        return None

    @staticmethod
    def check_serving(endpoint: EndpointView) -> EndpointView:
        """`endpoint` if it takes invocations; EndpointNotReady saying why not."""
        if endpoint["state"] == STOPPED:
            raise EndpointNotReady(f"endpoint {endpoint['name']} is stopped: start it to run prompts")
        if endpoint["state"] not in READY_STATES:
            reason = f": {endpoint['reason']}" if endpoint.get("reason") else ""
            raise EndpointNotReady(f"endpoint {endpoint['name']} is {endpoint['state']}{reason}")
        return endpoint
