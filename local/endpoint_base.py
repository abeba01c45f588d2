"""What every part of a local endpoint stands on (local/endpoints.py puts them together): its `state.json`, the
view made of it, its workers' processes and their /status, and the listeners told when a deploy has settled."""

from __future__ import annotations

import json
import os
import threading
from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, cast

from typing_extensions import NotRequired, Required, TypedDict, Unpack

from ..core.endpoints import STOPPED, STOPPING, Endpoints
from ..core.errors import message_of
from ..core.fs import scratch
from ..core.fs.files import NotARegularFile, read_regular
from ..core.names import ENVIRONMENT_NAME
from ..core.records import EndpointView, Manifest, ProofRun
from ..core.shapes import validate
from ..core.templates import now
from ..core.worker_contract import TOKEN_HEADER, WorkerReport, read_report
from .inflight import InFlight
from .processes import Processes

READY_TIMEOUT = 900.0
# Whole exchanges with a worker (core/net/http_deadline.py: a worker that trickles its answer cannot hold them).
STATUS_TIMEOUT_S = 2.0


class Report(TypedDict, total=False):
    """What a local endpoint carries from its worker's /status (worker/coldstart.py says what they hold)."""

    phases: list[dict[str, Any]] | None
    activity: str | None
    comfyuis: list[dict[str, Any]] | None


class Worker(TypedDict):
    """A worker process of an endpoint: how to reach it and the secret it asks for."""

    pid: int
    port: int
    url: str
    token: str


class NextWorker(Worker):
    """The worker a redeploy starts beside the serving one, and what it serves once traffic moves to it."""

    version: int
    manifest_uri: str
    idle_stop_minutes: int
    shared: bool  # the endpoint's once traffic moves to it: this worker listens on share_host if so
    prove: NotRequired[bool]  # run the templates' proofs before traffic moves (not for a rollback; absent: yes)


class LocalState(Report, total=False):
    """An endpoint's `state.json`: its view, its worker (readable by this user only: it holds the secret)."""

    name: Required[str]
    kind: Literal["local"]
    state: Required[str]
    environment: str
    version: int
    manifest_uri: str
    reason: str | None
    created_at: str
    updated_at: str
    pid: int | None
    port: int | None
    url: str | None
    token: str | None
    idle_stop_minutes: int  # core/idle_stop.py: 0, never
    stopped_at: str | None
    stopped_by: str | None
    shared: bool  # the team's (core/shared_registry.py): its worker listens on share_host
    next: NextWorker | None  # a redeploy's worker while it starts beside the serving one
    retiring: list[int] | None  # replaced workers finishing this process's runs (pids; stopped on adoption)
    proofs: ProofRun | None  # the proof run of the version it serves
    proof_failed: ProofRun | None  # the proof run that stopped the last switch


class LocalChange(Report, total=False):
    state: str
    reason: str | None


def report_changed(report: Report, state: LocalState) -> bool:
    """Whether the worker's phases or ComfyUIs differ from the endpoint's (its activity line changes often)."""
    return report.get("phases") != state.get("phases") or report.get("comfyuis") != state.get("comfyuis")


def token_header(token: str | None) -> dict[str, str]:
    return {TOKEN_HEADER: token} if token else {}


def local_manifest(manifest: Manifest, shared: bool | None = None) -> Manifest:
    """`manifest` as a local endpoint serves it: its local config (or the default one, for an environment
    published for another kind), shared or private when `shared` says."""
    endpoint = manifest.get("endpoint")
    config: dict[str, Any] = dict(endpoint) if endpoint and endpoint["kind"] == "local" else {"kind": "local"}
    if shared is not None:
        config["shared"] = shared
    return cast(Manifest, {**manifest, "endpoint": config})


def is_serving(state: LocalState) -> bool:
    """Whether the endpoint's state says a worker takes its invocations (Updating: the old one, beside `next`)."""
    return state["state"] in ("InService", "Updating") and bool(state.get("url"))


class LocalEndpointsBase(Endpoints):
    """The state and the steps the parts of LocalEndpoints share (its constructor sets the attributes); the
    abstract methods are the life cycle's (local/endpoints.py), which the other parts call back into."""

    kind = "local"
    root: Path
    on_change: Callable[[EndpointView], None]
    _lock: threading.RLock
    _processes: Processes  # by pid: an endpoint has two workers during a redeploy
    _inflight: InFlight
    _settled: dict[str, list[Callable[[], None]]]  # by endpoint: told when its deploy has settled

    # the life cycle's (local/endpoints.py)

    @abstractmethod
    def deploy(self, manifest: Manifest, prove: bool = True) -> EndpointView: ...

    @abstractmethod
    def stop(self, name: str, by: str | None = None) -> EndpointView: ...

    @abstractmethod
    def _watch_serving(self, name: str, pid: int) -> None: ...

    # the sharing's (local/endpoint_sharing.py)

    @abstractmethod
    def _share(self, state: LocalState, force: bool = False) -> bool: ...

    @abstractmethod
    def _withdraw(self, name: str) -> None: ...

    # state on disk

    def _dir(self, name: str) -> Path:
        return self.root / ENVIRONMENT_NAME.check(name).lower()

    def _read(self, name: str) -> LocalState | None:
        try:
            return validate(LocalState, json.loads(read_regular(self._dir(name) / "state.json")))
        except (FileNotFoundError, ValueError, RecursionError):  # ShapeInvalid is a ValueError
            return None

    def _write(self, state: LocalState) -> LocalState:
        folder = self._dir(state["name"])
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / scratch.temp_name(scratch.HIDDEN, ".state.json")  # swept at start if a killed process left it
        # Readable by this user only: it holds the worker's secret.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(state))
        os.replace(tmp, folder / "state.json")
        return state

    def _headers(self, name: str) -> dict[str, str]:
        state = self._read(name)
        return token_header(state.get("token") if state else None)

    def _set(self, name: str, **fields: Unpack[LocalChange]) -> LocalState | None:
        """Change a known endpoint's state (None, nothing written, if it has none: deleted meanwhile)."""
        with self._lock:
            state = self._read(name)
            if state is None:
                return None
            state = self._write({**state, **fields, "updated_at": now()})
        self.on_change(self.describe(state))
        return state

    @staticmethod
    def describe(state: LocalState) -> EndpointView:
        """What the sidebar shows; `phases`, `activity` and `comfyuis` are the worker's own (its /status:
        the cold start step by step, what it does now, each ComfyUI's state)."""
        view: EndpointView = {
            "name": state["name"], "kind": "local", "state": state["state"],
            "environment": state.get("environment") or state["name"],
            "version": state.get("version"), "url": state.get("url"), "reason": state.get("reason"),
            "created_at": state.get("created_at"), "updated_at": state.get("updated_at"),
            "phases": state.get("phases") or [], "activity": state.get("activity"),
            "comfyuis": state.get("comfyuis") or [],
            "idle_stop_minutes": state.get("idle_stop_minutes") or 0,
            "stopped_at": state.get("stopped_at"), "stopped_by": state.get("stopped_by"),
            # Always said (false too): a page merging a change into the view it has must not keep a stale true.
            "shared": bool(state.get("shared")),
            "proofs": state.get("proofs"), "proof_failed": state.get("proof_failed"),
        }
        return view

    # settling: what waits for a deploy under way

    def when_settled(self, name: str, done: Callable[[], None]) -> None:
        """`done()` once the endpoint's deploy under way has settled: its worker ready or failed, traffic moved
        to a redeploy's worker or that worker given up (at once if none is under way). The environment's lease
        is held until then (core/environments.py)."""
        with self._lock:
            state = self._read(name)
            if state is not None and (state["state"] == "Creating" or state.get("next")):
                self._settled.setdefault(name.lower(), []).append(done)
                return
        done()

    def _settle(self, name: str) -> None:
        with self._lock:
            waiting = self._settled.pop(name.lower(), [])
        for done in waiting:
            try:
                done()
            except Exception:  # one listener's failure never stops the others, nor the watcher
                continue

    # workers: their processes, their /status

    def _status(self, url: str | None, headers: dict[str, str]) -> WorkerReport | None:
        """The worker's /status; None if it does not answer, or answers what cannot be read."""
        from http.client import HTTPException

        from ..core.net.http_deadline import request

        if not url:
            return None
        try:
            return read_report(json.loads(request(url + "/status", headers=headers, seconds=STATUS_TIMEOUT_S)[1]))
        except (OSError, ValueError, HTTPException):  # ShapeInvalid, ProtocolUnsupported are ValueErrors
            return None

    def _current(self, name: str, pid: int) -> LocalState | None:
        state = self._read(name)
        return state if state and state.get("pid") == pid and state["state"] != "Deleting" else None

    def _pending(self, name: str, pid: int) -> LocalState | None:
        """The endpoint's state while worker `pid` is its redeploy's next worker (None once it is not)."""
        state = self._read(name)
        nxt = state.get("next") if state else None
        return state if state and nxt and nxt["pid"] == pid and \
            state["state"] not in ("Deleting", STOPPING, STOPPED) else None

    @staticmethod
    def _report(status: WorkerReport | None, state: LocalState) -> Report:
        """The worker's report fields that changed since `state` (nothing when /status did not answer)."""
        if not status:
            return {}
        fresh: Report = {"phases": status.get("phases"), "activity": status.get("activity"),
                         "comfyuis": status.get("comfyuis")}
        return fresh if report_changed(fresh, state) or fresh["activity"] != state.get("activity") else {}

    def _running(self, name: str, pid: int | None) -> bool:
        return self._processes.running(pid)

    def _stop_pid(self, pid: int | None) -> None:
        self._processes.stop(pid)

    def _last_lines(self, name: str, n: int = 5) -> str:
        path = self._dir(name) / "worker.log"
        try:
            lines = read_regular(path).decode(errors="replace").splitlines()[-n:] if path.exists() else []
        except (OSError, NotARegularFile) as err:
            return f"log unreadable: {message_of(err)}"
        return "last log lines: " + " | ".join(lines) if lines else "no log"

