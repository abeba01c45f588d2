"""A local endpoint's idle stop (core/idle_stop.py): its watcher stops the worker once it has run nothing for the
endpoint's idle_stop_minutes, read in the /status it polls anyway."""

from __future__ import annotations

from collections.abc import Callable

from ..core.endpoints import EndpointNotFound, EndpointStateConflict
from ..core.idle_stop import IDLE, due, parse
from ..core.worker_contract import WorkerReport
from .endpoint_base import LocalEndpointsBase, LocalState


class IdleStop(LocalEndpointsBase):
    """LocalEndpoints' idle stop; `clock` is its time (tests set a fake one)."""

    clock: Callable[[], float]

    def idle_due(self, state: LocalState, status: WorkerReport | None) -> bool:
        """Whether the worker has run nothing for the endpoint's idle_stop_minutes (core/idle_stop.py): read in
        the /status this watcher polls anyway, so the idle stop costs no request of its own."""
        since = parse(status.get("idle_since")) if status and status["state"] == "ready" else None
        return due(state.get("idle_stop_minutes") or 0, since, self.clock())

    def _stop_idle(self, name: str) -> None:
        try:
            self.stop(name, by=IDLE)
        except (EndpointNotFound, EndpointStateConflict):  # deleted or stopped by someone meanwhile
            pass

