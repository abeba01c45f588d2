"""The team's shared local endpoints, as every ComfyUI on the store sees them (core/shared_registry.py).

Each is a designer's local endpoint on another ComfyUI (this ComfyUI's own shared endpoints are its local
provider's): listed from the store, run on at the URL its owner wrote with the token the store keeps for the
team, stopped or redeployed by an ask in the store the owner's watcher carries out (the owner: another ComfyUI, or
a machine serving without one, `worker serve --share`). Its view is a local endpoint's with `shared: true` and
`owner`; one whose owner stopped beating is Gone, with a reason, and takes no runs.
"""

from __future__ import annotations

from collections.abc import Callable

from ..core.endpoints import EndpointNotFound, EndpointNotReady, Endpoints, EndpointStateConflict
from ..core.records import EndpointView, Manifest
from ..core.shared_registry import GONE, SharedEntry, SharedRegistry
from ..core.worker_contract import TOKEN_HEADER, Invocation, WorkerEvent, WorkerResult
from .endpoint_runs import cancel_at_worker, invoke_worker


class SharedEndpoints(Endpoints):
    """`instance`: this ComfyUI (its own shared endpoints are not listed here); `me`: its display name, who a
    stop is asked by."""

    kind = "shared"

    def __init__(self, registry: SharedRegistry, instance: str, me: str,
                 on_change: Callable[[EndpointView], None] | None = None):
        self.registry = registry
        self.instance = instance
        self.me = me
        self.on_change = on_change or (lambda endpoint: None)

    def _view(self, entry: SharedEntry) -> EndpointView:
        gone = self.registry.expired(entry)
        return {
            "name": entry["name"], "kind": "local", "state": GONE if gone else entry["state"],
            "environment": entry["name"], "version": entry["version"], "url": None if gone else entry["url"],
            "reason": f"{entry['owner']}'s ComfyUI, which runs it, has not been heard from since "
                      f"{entry['heartbeat_at']}" if gone else None,
            "updated_at": entry["heartbeat_at"], "shared": True, "owner": entry["owner"],
        }

    def _entry(self, name: str) -> SharedEntry:
        entry = self.registry.entry(name)
        if entry is None or entry["owner_instance"] == self.instance:  # ours: the local provider's
            raise EndpointNotFound(f"no endpoint runs environment {name!r}")
        return entry

    def list(self) -> list[EndpointView]:
        return [self._view(e) for e in self.registry.entries() if e["owner_instance"] != self.instance]

    def get(self, name: str) -> EndpointView:
        return self._view(self._entry(name))

    def _headers(self, name: str) -> dict[str, str]:
        token = self.registry.token(name)
        if token is None:
            raise EndpointNotReady(f"endpoint {name}'s token cannot be read from the store: ask its owner to "
                                   "start it again")
        return {TOKEN_HEADER: token}

    def invoke(self, name: str, body: Invocation, on_event: Callable[[WorkerEvent], None]) -> WorkerResult:
        url = self.check_ready(name).get("url") or ""
        return invoke_worker(name, url, self._headers(name), body, on_event, lambda: None)

    def cancel(self, name: str, execution_id: str, token: str) -> None:
        try:
            view = self.get(name)
            headers = self._headers(name)
        except (EndpointNotFound, EndpointNotReady):
            return
        cancel_at_worker(view.get("url"), headers, execution_id, token)

    def stop(self, name: str) -> EndpointView:
        """Asked through the store: the owner's watcher stops the worker within a heartbeat and withdraws it."""
        view = self.get(name)
        if view["state"] == GONE:  # nobody is there to obey: the entry goes
            self.registry.withdraw(name)
            self.on_change({"name": view["name"], "kind": "local", "state": "Deleted"})
            return {**view, "state": "Deleted"}
        self.registry.ask_stop(name, self.me)
        view = {**view, "state": "Stopping", "stopped_by": self.me}
        self.on_change(view)
        return view

    def delete(self, name: str) -> None:
        """Another ComfyUI's endpoint is not deleted from here, only stopped (its owner keeps what it runs)."""
        self.stop(name)

    def start(self, name: str) -> EndpointView:
        raise EndpointStateConflict(f"endpoint {name} runs on {self._entry(name)['owner']}'s ComfyUI: only "
                                    "there can it be started")

    def deploy(self, manifest: Manifest) -> EndpointView:
        """Asked through the store: the owner's watcher starts this version beside the serving one within a
        heartbeat (its runs in flight finish on the old one), as its own redeploys do."""
        view = self.get(manifest["name"])
        if view["state"] == GONE:
            raise EndpointStateConflict(f"endpoint {view['name']} runs on {view['owner']}'s ComfyUI, which has not "
                                        "been heard from: it cannot deploy; stop it (its entry goes), then deploy "
                                        "here")
        self.registry.ask_redeploy(manifest["name"], manifest["version"], self.me)
        view = {**view, "reason": f"version {manifest['version']} asked of {view['owner']} by {self.me}: it "
                                  "starts beside the serving version"}
        self.on_change(view)
        return view

    def logs(self, name: str, tail: int = 200, contains: str | None = None) -> str:
        owner = self._entry(name)["owner"]
        return f"endpoint {name} runs on {owner}'s ComfyUI: its log is there\n"
