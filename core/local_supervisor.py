"""The one owner of this process's local endpoints.

Their workers are processes of their own: they outlive a configuration applied without a restart (the Connect
panel) and ComfyUI's own restarts (after which `adopt` takes them back). So the provider that starts, watches
and stops them is made once per process, here, and the services of each configuration are given this same one
(services.Services): the configuration that runs names the store new deploys read and who hears of changes
(`serve`); the workers, their watchers and the runs in flight never change hands.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from .endpoints import Endpoints

if TYPE_CHECKING:
    from .proofs import Prover
    from .shared_registry import Sharing

# Makes the provider: from a function giving the store URI new deploys read, and one to tell of each change.
MakeLocal = Callable[[Callable[[], str], Callable[[dict], None]], Endpoints]


class LocalSupervisor:
    def __init__(self, make: MakeLocal):
        self._make = make
        self._lock = threading.Lock()
        self._provider: Endpoints | None = None
        self._store_uri = ""
        self._listener: Callable[[dict], None] = lambda endpoint: None
        self._sharing: Callable[[], Sharing | None] = lambda: None
        self._prover: Callable[[], Prover | None] = lambda: None

    def serve(self, store_uri: str, on_change: Callable[[dict], None],
              sharing: Callable[[], Sharing | None] = lambda: None,
              prover: Callable[[], Prover | None] = lambda: None) -> None:
        """The configuration that runs from now on: new deploys read their environment from `store_uri`, every
        change of a local endpoint goes to `on_change`, shared endpoints beat in `sharing`'s registry, and a
        redeploy's new worker runs `prover`'s proofs (core/proofs.py) before traffic moves to it."""
        with self._lock:
            self._store_uri, self._listener, self._sharing, self._prover = store_uri, on_change, sharing, prover

    def sharing(self) -> Sharing | None:
        return self._sharing()

    def prover(self) -> Prover | None:
        return self._prover()

    def provider(self) -> Endpoints:
        """The local endpoints, made on first use (a SageMakerError from `make`, where they cannot be made here,
        leaves nothing made: the next use tries again)."""
        with self._lock:
            if self._provider is None:
                self._provider = self._make(self.store_uri, self._changed)
            return self._provider

    def store_uri(self) -> str:
        return self._store_uri

    def _changed(self, endpoint: dict) -> None:
        self._listener(endpoint)
