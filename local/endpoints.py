"""Local endpoints: one worker subprocess per environment on a free 127.0.0.1 port.

Each worker has a secret of its own (in `state.json`, never shown): the worker
refuses invocations without it, so no other program or web page on this
machine can run prompts through its port.

Each endpoint keeps `state.json`, its worker's log and its ComfyUI base under
`<state dir>/endpoints/<environment>/`; model and pack blobs share one cache
(`<state dir>/worker-cache`), so a restart downloads nothing. Workers run in
their own session: they outlive a ComfyUI restart and are re-adopted by pid
and /status, or restarted when they are gone. A worker keeps each run's result
a while (worker/results.py), so the runs a ComfyUI left in flight when it was
killed or stopped are answered to its next start (`resume`).

A redeploy while a worker serves (another version, or a version that did not
deploy before) starts the new worker beside it, as SageMaker updates an
endpoint: the endpoint is Updating and keeps its serving worker (url, pid,
secret, version) with the new one in `next`; once that one is ready, traffic
moves to it in one write of `state.json`, and the old worker is stopped when the
invocations this process sent it have ended (or after DRAIN_LIMIT_S). A new
worker that does not start is stopped and the old one serves on, the endpoint
saying "version N did not deploy (...); still serving version M".
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, cast

from typing_extensions import NotRequired, Required, TypedDict, Unpack

from ..core.cancel_tokens import TOKEN_FIELD
from ..core.endpoints import (
    STOPPED,
    STOPPING,
    EndpointBusy,
    EndpointNotFound,
    EndpointNotReady,
    Endpoints,
    EndpointStateConflict,
    InvocationFailed,
    RunUnknown,
)
from ..core.environments import manifest_key, read_manifest
from ..core.errors import SageMakerError, message_of
from ..core.executions import RESUMABLE
from ..core.fs import scratch
from ..core.fs.files import NotARegularFile, read_regular
from ..core.idle_stop import IDLE, due, minutes, parse
from ..core.names import ENVIRONMENT_NAME
from ..core.proofs import Prover, summary
from ..core.records import EndpointView, Manifest, ProofRun
from ..core.shapes import ShapeInvalid, validate
from ..core.shared_registry import HEARTBEAT_S, Sharing
from ..core.store import KeyNotFound
from ..core.templates import now
from ..core.unreadable import Unreadable
from ..core.worker_contract import (
    KEEPS_HEADER,
    TOKEN_HEADER,
    Invocation,
    ProtocolUnsupported,
    WorkerEvent,
    WorkerReport,
    WorkerResult,
    WorkerRuntime,
    read_report,
    read_result,
    read_stream,
    refusal,
)
from .inflight import InFlight, Route
from .processes import Processes, alive, free_port

READY_TIMEOUT = 900.0
STATUS_POLL_IN_SERVICE = 2.0  # s between /status reads once InService (first prompts, ComfyUI restarts)
# Whole exchanges with a worker (core/net/http_deadline.py: a worker that trickles its answer cannot hold them).
STATUS_TIMEOUT_S = 2.0
CANCEL_TIMEOUT_S = 10.0
# Each worker keeps its last KEEP_RESULTS results for KEEP_MINUTES (worker/results.py): a ComfyUI restarted with
# runs in flight finds what its worker finished meanwhile (`resume`).
KEEP_RESULTS = 100
KEEP_MINUTES = 60
# The CLI's arguments that serve a worker: the worker image's ENTRYPOINT + CMD end the same way (a test
# compares them). Here the CLI is started by the extension's folder (see __main__.py), so the worker runs
# this very copy's code whether or not a package `comfyui_sagemaker` is installed.
WORKER_ARGS = ("worker", "serve")
# How long a replaced worker may go on with this process's invocations before it is stopped anyway: the runs'
# own time limit (the worker's WORKER_INVOCATION_TIMEOUT, which its process inherits from this one).
DRAIN_LIMIT_S = float(os.environ.get("WORKER_INVOCATION_TIMEOUT") or 3600)


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


def _changed(report: Report, state: LocalState) -> bool:
    """Whether the worker's phases or ComfyUIs differ from the endpoint's (its activity line changes often)."""
    return report.get("phases") != state.get("phases") or report.get("comfyuis") != state.get("comfyuis")


def worker_command(python: str, extension_dir: Path) -> list[str]:
    return [python, str(extension_dir), *WORKER_ARGS]


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


log = logging.getLogger("comfyui_sagemaker")


def _constant(value: str) -> Callable[[], str]:
    return lambda: value


def _header(token: str | None) -> dict[str, str]:
    return {TOKEN_HEADER: token} if token else {}


def local_manifest(manifest: Manifest, shared: bool | None = None) -> Manifest:
    """`manifest` as a local endpoint serves it: its local config (or the default one, for an environment
    published for another kind), shared or private when `shared` says."""
    endpoint = manifest.get("endpoint")
    config: dict[str, Any] = dict(endpoint) if endpoint and endpoint["kind"] == "local" else {"kind": "local"}
    if shared is not None:
        config["shared"] = shared
    return cast(Manifest, {**manifest, "endpoint": config})


def _serving(state: LocalState) -> bool:
    """Whether the endpoint's state says a worker takes its invocations (Updating: the old one, beside `next`)."""
    return state["state"] in ("InService", "Updating") and bool(state.get("url"))


def invoke_worker(name: str, url: str, headers: dict[str, str], body: Invocation,
                  on_event: Callable[[WorkerEvent], None], on_lost: Callable[[], None],
                  resumable: bool = False) -> WorkerResult:
    """One prompt on a worker at `url` (its /invocations stream); `on_lost` when it stopped answering. With
    `resumable` (this ComfyUI's own worker), a worker that keeps results says so and the run's record carries
    what LocalEndpoints.resume needs to ask for its result in this ComfyUI's next life."""
    import requests  # lazily: importing the extension stays light

    try:
        # No redirects: the token header would follow them to wherever a worker's answer points.
        with requests.post(url + "/invocations", data=json.dumps(body).encode(), stream=True, timeout=(10, None),
                           allow_redirects=False,
                           headers={"Content-Type": "application/json", "Accept": "application/x-ndjson",
                                    **headers}) as r:
            if r.status_code != 200:
                return {"execution_id": body.get("execution_id"), "status": "failed", "outputs": {},
                        "error": refusal(r.content, r.status_code)}
            if resumable and r.headers.get(KEEPS_HEADER):  # accepted, and answered to this ComfyUI's next life
                kept = int(r.headers[KEEPS_HEADER]) if r.headers[KEEPS_HEADER].isdigit() else 0
                on_event({"type": RESUMABLE, "data": {"resume": {"kind": "local", "kept_s": kept}}})
            result = read_stream(r.iter_lines(), on_event)
    except (ShapeInvalid, ProtocolUnsupported) as err:
        raise InvocationFailed(f"endpoint {name}'s worker answered what this extension cannot read: {err}") \
            from None
    except (requests.RequestException, ValueError) as err:
        on_lost()
        raise InvocationFailed(f"endpoint {name} stopped answering: {err}") from None
    if result is not None:
        return result
    on_lost()
    raise InvocationFailed(f"endpoint {name} closed the stream without a result (did the worker die?)")


def cancel_at_worker(url: str | None, headers: dict[str, str], execution_id: str, token: str) -> None:
    """Ask the worker at `url` to interrupt (or skip) an execution, with the run's cancel token; best effort."""
    from http.client import HTTPException  # lazily: importing the extension stays light

    from ..core.net.http_deadline import request

    if not url:  # stopped or stopping: its worker runs nothing any more
        return
    try:
        request(url + "/invocations", "POST", {"action": "cancel", "execution_id": execution_id,
                                               TOKEN_FIELD: token}, headers, CANCEL_TIMEOUT_S)
    except (OSError, ValueError, HTTPException):
        pass


class LocalEndpoints(Endpoints):
    kind = "local"

    def __init__(self, state_dir: Path, store_uri: str | Callable[[], str], runtime: WorkerRuntime,
                 on_change: Callable[[EndpointView], None] | None = None,
                 sharing: Callable[[], Sharing | None] = lambda: None,
                 prover: Callable[[], Prover | None] = lambda: None):
        """`store_uri`: where new deploys read their environment; a function for the process's one owner
        (core/local_supervisor.py), whose store is that of the configuration that runs now. `sharing`: that
        configuration's registry of shared endpoints and share_host (None: nothing can be shared). `prover`: its
        templates' proofs, run on a redeploy's new worker before traffic moves to it (None: none)."""
        self._sharing = sharing
        self._prover = prover
        self._beats: dict[str, tuple[float, str]] = {}  # name -> (monotonic time, state) of its last heartbeat
        self.root = Path(state_dir) / "endpoints"
        self.cache = Path(state_dir) / "worker-cache"
        self._store_uri = _constant(store_uri) if isinstance(store_uri, str) else store_uri
        self.runtime = runtime
        self.on_change = on_change or (lambda endpoint: None)
        self._lock = threading.RLock()
        self._processes = Processes()  # by pid: an endpoint has two workers during a redeploy
        self._inflight = InFlight()
        self._settled: dict[str, list[Callable[[], None]]] = {}  # by endpoint: told when its deploy has settled
        self.drain_limit = DRAIN_LIMIT_S
        self.clock: Callable[[], float] = time.time  # the idle stop's (tests set a fake one)
        # A machine serving without a ComfyUI (local/on_premises.py): its workers run one ComfyUI per GPU
        # (worker/devices.py), where a designer's own ComfyUI would use the GPU too, and never stop idle (owned
        # hardware costs nothing idle, and nobody is there to start it again).
        self.dedicated = False
        self.root.mkdir(parents=True, exist_ok=True)

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
        return _header(state.get("token") if state else None)

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

    # the seam

    def list(self) -> list[EndpointView]:
        out = []
        for folder in sorted(self.root.iterdir()) if self.root.exists() else []:
            state = self._read(folder.name)
            if state:
                out.append(self.describe(state))
        return out

    def get(self, name: str) -> EndpointView:
        state = self._read(name)
        if state is None:
            raise EndpointNotFound(f"no endpoint runs environment {name!r}")
        return self.describe(state)

    def rollback(self, manifest: Manifest) -> EndpointView:
        """A deploy of an older version whose new worker takes traffic once ready, unproven: artists ran on it."""
        return self.deploy(manifest, prove=False)

    def deploy(self, manifest: Manifest, prove: bool = True) -> EndpointView:
        """A first deploy, or one after the worker is gone, starts a worker (Creating). A redeploy while a worker
        serves starts the new one beside it (Updating; the module's docstring says what follows), proven first."""
        name, version = manifest["name"], manifest["version"]
        uri = f"{self._store_uri()}/{manifest_key(name, version)}"
        idle = 0 if self.dedicated else minutes(manifest.get("endpoint"))
        config = manifest.get("endpoint")
        asked = config.get("shared") if config else None
        with self._lock:
            old = self._read(name)
            # Sharing sticks to the endpoint through redeploys of configs that do not say (false is never stored):
            # only the Share switch's explicit false makes it private again.
            shared = asked if asked is not None else bool(old and old.get("shared"))
            if shared:
                self._check_share(name)
            pending = (old.get("next") if old else None) or None
            serving = old is not None and _serving(old) and self._running(name, old.get("pid"))
            if old and old.get("version") == version and bool(old.get("shared")) == shared and (
                    serving or (old["state"] == "Creating" and alive(old.get("pid")))):
                if pending is None:
                    return self.describe(old)
                self._stop_pid(pending["pid"])  # back to the version that serves: the update is dropped
                state = self._write({**old, "state": "InService", "reason": None, "next": None, "updated_at": now()})
                settle = True
            elif old and serving and pending and pending["version"] == version and \
                    pending.get("shared", False) == shared and self._running(name, pending["pid"]):
                return self.describe(old)  # this very update is under way
            elif old and serving:
                if pending:
                    self._stop_pid(pending["pid"])  # superseded by this one
                # The endpoint's `shared` changes with the switch of workers (the serving one listens where it did).
                state = self._write({**old, "state": "Updating", "reason": None, "updated_at": now(),
                                     "next": {**self._spawn(name, version, uri, shared), "version": version,
                                              "manifest_uri": uri, "idle_stop_minutes": idle, "shared": shared,
                                              "prove": prove}, "proof_failed": None})
                settle = False
            else:
                if old:
                    self._stop(old)
                    if old.get("shared") and not shared:
                        self._withdraw(name)
                # Creating, not Updating: no worker serves until this one is ready (Updating is a ready state).
                state = self._write({
                    "name": name, "kind": "local", "state": "Creating", "environment": name,
                    "version": version, "manifest_uri": uri, "reason": None,
                    "created_at": (old.get("created_at") if old else None) or now(), "updated_at": now(),
                    "idle_stop_minutes": idle, "stopped_at": None, "stopped_by": None, "shared": shared,
                    "next": None, "retiring": None,  # stopped with the old worker
                })
                self._start(state)
                settle = False
        if (started := state.get("next")) is not None:
            threading.Thread(target=self._watch_next, args=(name, started["pid"]), daemon=True,
                             name=f"endpoint-{name}-next").start()
        self.on_change(self.describe(state))
        if settle:
            self._settle(name)
        return self.describe(state)

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

    def delete(self, name: str) -> None:
        state = self._read(name)
        if state is None:
            raise EndpointNotFound(f"no endpoint runs environment {name!r}")
        self._set(name, state="Deleting")
        with self._lock:
            self._stop(self._read(name) or state)
            shutil.rmtree(self._dir(name), ignore_errors=True)
        if state.get("shared"):
            self._withdraw(name)
        self.on_change({"name": state["name"], "kind": "local", "state": "Deleted"})
        self._settle(name)

    def stop(self, name: str, by: str | None = None) -> EndpointView:
        """The worker stops; the endpoint stays (Stopped), its log and ComfyUI base with it. `by`: who stopped it
        when not a person (core/idle_stop.py's IDLE)."""
        with self._lock:
            state = self._read(name)
            if state is None:
                raise EndpointNotFound(f"no endpoint runs environment {name!r}")
            if state["state"] in (STOPPED, STOPPING, "Deleting"):
                raise EndpointStateConflict(f"endpoint {state['name']} is {state['state'].lower()} already")
            # Stopping first: the watcher then leaves it alone instead of taking the worker's exit for a failure,
            # and no page offers Start before the worker is gone (a Start would wait here for this lock).
            stopping = self._write({**state, "state": STOPPING, "reason": None, "updated_at": now()})
        self.on_change(self.describe(stopping))
        with self._lock:
            state = self._read(name) or stopping
            if state["state"] != STOPPING:  # deleted meanwhile
                return self.describe(state)
            self._stop(state)
            stamp = now()
            state = self._write({**state, "state": STOPPED, "pid": None, "port": None, "url": None,
                                 "token": None, "activity": None, "comfyuis": [], "updated_at": stamp,
                                 "stopped_at": stamp, "stopped_by": by, "next": None, "retiring": None})
        if state.get("shared"):
            self._withdraw(name)
        self.on_change(self.describe(state))
        self._settle(name)
        return self.describe(state)

    def start(self, name: str) -> EndpointView:
        """A stopped endpoint's worker starts again, on the version it ran (Creating, then InService)."""
        with self._lock:
            state = self._read(name)
            if state is None:
                raise EndpointNotFound(f"no endpoint runs environment {name!r}")
            if state["state"] != STOPPED:
                what = "running already" if state["state"] in ("Creating", "Updating", "InService") else \
                    f"{state['state']}, not stopped: deploy its environment again instead"
                raise EndpointStateConflict(f"endpoint {state['name']} is {what}")
            state = {**state, "state": "Creating", "reason": None, "phases": [], "updated_at": now(),
                     "stopped_at": None, "stopped_by": None}
            self._write(state)
            self._start(state)
        self.on_change(self.describe(state))
        return self.describe(state)

    def logs(self, name: str, tail: int = 200, contains: str | None = None) -> str:
        """The worker's log (its ComfyUI's output is in it too, as on SageMaker)."""
        self.get(name)
        path = self._dir(name) / "worker.log"
        lines = read_regular(path).decode(errors="replace").splitlines() if path.exists() else []
        if contains:
            lines = [line for line in lines if contains.lower() in line.lower()]
        return "\n".join(lines[-tail:]) + ("\n" if lines else "") if tail else ""

    def invoke(self, name: str, body: Invocation, on_event: Callable[[WorkerEvent], None]) -> WorkerResult:
        self.check_ready(name)
        execution_id = body.get("execution_id") if isinstance(body, dict) else None
        with self._lock:  # the worker is read and counted as one step: a switch of workers comes before or after
            state = self._read(name)
            if state is None or not _serving(state) or not state.get("pid"):
                raise EndpointNotReady(f"endpoint {name} is {state['state'] if state else 'gone'}")
            route = Route(state["pid"] or 0, state.get("url") or "", state.get("token"))
            self._inflight.begin(route, execution_id)

        def relay(event: WorkerEvent) -> None:
            resume = (event.get("data") or {}).get("resume") if event.get("type") == RESUMABLE else None
            if isinstance(resume, dict):  # the worker that keeps its result: a redeploy may replace it meanwhile
                event = {**event, "data": {**(event.get("data") or {}), "resume": {**resume, "worker_pid": route.pid}}}
            on_event(event)

        try:
            return invoke_worker(name, route.url, _header(route.token), body, relay,
                                 lambda: self._check_process(name), resumable=True)
        finally:
            self._inflight.end(route, execution_id)

    def resume(self, name: str, execution_id: str, resume: dict[str, Any],
               on_event: Callable[[WorkerEvent], None]) -> WorkerResult:
        """A run this ComfyUI invoked before it was restarted: its worker kept its result (worker/results.py) and
        answers it, once the run has ended if it is still going. RunUnknown if the worker that ran it is gone
        (stopped, restarted, redeployed) or no longer has it. Its events were the stream's: none are relayed."""
        import requests  # lazily: importing the extension stays light

        state = self._read(name)
        if state is None:
            raise RunUnknown(f"endpoint {name} is gone")
        url, headers = self._worker_of(state, execution_id, resume)
        if not url:
            raise RunUnknown(f"endpoint {name} is {state['state'].lower()}, its worker that ran the run gone")
        try:
            # No read timeout: the worker answers when the run ends, within the run's own time limit.
            r = requests.post(url + "/invocations", data=json.dumps({"action": "result", "execution_id": execution_id}),
                              timeout=(10, None), headers={"Content-Type": "application/json", **headers})
        except requests.RequestException as err:
            raise RunUnknown(f"endpoint {name}'s worker did not answer ({err}): the worker that ran it is gone") \
                from None
        if r.status_code == 404:
            raise RunUnknown(f"endpoint {name}'s worker {refusal(r.content, 404).get('message')}")
        if r.status_code != 200:
            raise InvocationFailed(f"endpoint {name}'s worker would not give the result: "
                                   f"{refusal(r.content, r.status_code).get('message')}")
        try:
            return read_result(r.json())
        except (ValueError, RecursionError) as err:  # ShapeInvalid, ProtocolUnsupported, not JSON
            raise InvocationFailed(f"endpoint {name}'s worker answered what this extension cannot read: {err}") \
                from None

    def _worker_of(self, state: LocalState, execution_id: str, resume: dict[str, Any]) -> tuple[str | None,
                                                                                               dict[str, str]]:
        """Where to ask for a run's result: the worker it was sent to (this process's route, else the pid its
        record kept) while that one still runs; without either, the endpoint's serving worker (a record of an
        earlier version of this extension). (None, {}) when the worker that ran it is gone."""
        route = self._inflight.route(execution_id)
        if route is not None:
            return (route.url, _header(route.token)) if self._running(state["name"], route.pid) else (None, {})
        pid = resume.get("worker_pid")
        nxt = state.get("next")
        if isinstance(pid, int) and nxt and nxt["pid"] == pid:
            return (nxt["url"], _header(nxt["token"])) if self._running(state["name"], pid) else (None, {})
        if (isinstance(pid, int) and pid != state.get("pid")) or not self._running(state["name"], state.get("pid")):
            return None, {}  # replaced by a redeploy since (or stopped): its results went with it
        return state.get("url"), _header(state.get("token"))

    def cancel(self, name: str, execution_id: str, token: str) -> None:
        """Ask the worker to interrupt (or skip) an execution, with the run's cancel token; best effort."""
        try:
            # The worker the run went to: after a redeploy, the old one may still be running it.
            route = self._inflight.route(execution_id)
            url, headers = (route.url, _header(route.token)) if route else (self.get(name).get("url"),
                                                                          self._headers(name))
        except EndpointNotFound:
            return
        cancel_at_worker(url, headers, execution_id, token)

    # sharing (core/shared_registry.py)

    def _check_share(self, name: str) -> Sharing:
        """This configuration's sharing, or why this ComfyUI cannot share `name` now."""
        sharing = self._sharing()
        if sharing is None or not sharing.host:
            raise SageMakerError(f"endpoint {name} cannot be shared: set \"Share endpoints at\" (share_host) in "
                                 "Connect to this machine's address on the team's network first")
        entry = sharing.registry.entry(name)
        if entry and entry["owner_instance"] != sharing.instance and not sharing.registry.expired(entry):
            raise EndpointBusy(f"{entry['owner']} shares an endpoint of {name} already: stop it first")
        return sharing

    def _withdraw(self, name: str) -> None:
        sharing = self._sharing()
        self._beats.pop(name.lower(), None)
        if sharing is not None:
            try:
                sharing.registry.withdraw(name)
            except Exception as err:  # the store unreachable: the entry expires by itself (EXPIRES_S)
                log.warning("comfyui-sagemaker: cannot withdraw shared endpoint %s: %s", name, message_of(err))

    def _share(self, state: LocalState, force: bool = False) -> bool:
        """For a shared endpoint, from its watcher: obey a stop a designer asked for on another ComfyUI, else write
        the heartbeat (when the state changed or HEARTBEAT_S passed). False once stopped here."""
        name = state["name"]
        last = self._beats.get(name.lower())
        if not state.get("shared") or (not force and last is not None and last[1] == state["state"]
                                         and time.monotonic() - last[0] < HEARTBEAT_S):
            return True
        sharing = self._sharing()
        if sharing is None:
            return True
        self._beats[name.lower()] = (time.monotonic(), state["state"])
        try:
            asked = sharing.registry.stop_asked(name)
            if asked is not None and state["state"] not in ("Failed",):
                try:
                    self.stop(name, by=asked["by"])
                except (EndpointNotFound, EndpointStateConflict):
                    self._withdraw(name)
                return False
            if state["state"] == "InService" and not state.get("next"):  # one update at a time
                self._redeploy_if_asked(sharing, name)
            sharing.registry.beat(name, state.get("version"), state["state"], state.get("url"), sharing.instance,
                                  sharing.owner, state.get("token"))
        except Exception as err:  # the store unreachable now: the next beat tries again; readers see it expire
            log.warning("comfyui-sagemaker: shared endpoint %s: heartbeat failed: %s", name, message_of(err))
        return True

    def _redeploy_if_asked(self, sharing: Sharing, name: str) -> None:
        """A designer on another ComfyUI asked for a version: it starts beside the serving one (deploy), and the
        ask goes. A version that cannot be read is said in the log and the ask goes too (it would never deploy)."""
        asked = sharing.registry.redeploy_asked(name)
        if asked is None:
            return
        wanted, etag = asked
        key = manifest_key(name, wanted["version"])
        try:
            manifest = read_manifest(sharing.registry.store.get(key).data, key, name, wanted["version"])
        except (KeyNotFound, Unreadable) as err:
            why = "it does not exist" if isinstance(err, KeyNotFound) else err.reason
            log.warning("comfyui-sagemaker: %s asked endpoint %s for version %d: %s", wanted["by"], name,
                        wanted["version"], why)
        else:
            log.info("comfyui-sagemaker: %s asked endpoint %s for version %d: deploying it", wanted["by"], name,
                     wanted["version"])
            try:
                self.deploy(local_manifest(manifest, shared=True))
            except SageMakerError as err:
                log.warning("comfyui-sagemaker: endpoint %s: the redeploy %s asked for failed: %s", name,
                            wanted["by"], err.message)
        sharing.registry.redeployed(name, etag)

    # processes

    def _base(self, name: str, version: int | None) -> Path:
        """A worker's ComfyUI base, one per version: a redeploy's worker links its nodes and models beside the
        serving one's, never under it."""
        return self._dir(name) / f"base-v{version or 0}"

    def _spawn(self, name: str, version: int | None, manifest_uri: str, shared: bool) -> Worker:
        folder = self._dir(name)
        sharing = self._check_share(name) if shared else None
        host = sharing.host if sharing else "127.0.0.1"
        port = free_port(host)
        token = secrets.token_urlsafe(32)  # a new worker, a new secret
        env = {
            **os.environ,
            "SAGEMAKER_MANIFEST_URI": manifest_uri,
            "SAGEMAKER_BIND_TO_PORT": str(port),
            # Beyond loopback only when shared, and then on the one address the designer chose (share_host).
            "WORKER_HOST": host,
            "WORKER_CACHE_DIR": str(self.cache),
            "WORKER_BASE_DIR": str(self._base(name, version)),
            # The designer's cache folder is the only candidate: the worker never moves it (to a /tmp in RAM).
            "WORKER_LOCAL_VOLUMES": str(self.cache),
            "COMFYUI_DIR": str(self.runtime.comfyui_dir),
            "WORKER_COMFYUI_ARGS": self.runtime.comfyui_args,
            "WORKER_EXTENSION_DIR": str(self.runtime.extension_dir),
            # A local endpoint shares this Python: its packages are the designer's own.
            "WORKER_INSTALL_PACKAGES": "0",
            "WORKER_TOKEN": token,
            "WORKER_KEEP_RESULTS": str(KEEP_RESULTS),
            "WORKER_KEEP_MINUTES": str(KEEP_MINUTES),
            # One ComfyUI on the designer's machine (its own ComfyUI uses the GPU too), unless this ComfyUI's
            # environment asks for more (WORKER_COMFYUI_COUNT or WORKER_DEVICES, see worker/devices.py).
            "WORKER_COMFYUI_COUNT": os.environ.get("WORKER_COMFYUI_COUNT")
            or ("" if os.environ.get("WORKER_DEVICES") or self.dedicated else "1"),
        }
        folder.mkdir(parents=True, exist_ok=True)
        pid = self._processes.start(worker_command(self.runtime.python, self.runtime.extension_dir), env,
                                    folder / "worker.log")
        # The address the team reaches it at: share_host itself, or the one advertised for every address.
        return {"pid": pid, "port": port, "url": _url((sharing.advertise if sharing else "") or host, port),
                "token": token}

    def _start(self, state: LocalState) -> None:
        worker = self._spawn(state["name"], state.get("version"), state["manifest_uri"], bool(state.get("shared")))
        state.update({"pid": worker["pid"], "port": worker["port"], "url": worker["url"], "token": worker["token"]})
        self._write(state)
        threading.Thread(target=self._watch, args=(state["name"], state["pid"]), daemon=True,
                         name=f"endpoint-{state['name']}").start()

    def _stop(self, state: LocalState) -> None:
        """Every worker of the endpoint: the serving one, a redeploy's next one, replaced ones finishing runs."""
        nxt = state.get("next")
        for pid in [state.get("pid"), nxt["pid"] if nxt else None, *(state.get("retiring") or [])]:
            self._stop_pid(pid)

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
        return fresh if _changed(fresh, state) or fresh["activity"] != state.get("activity") else {}

    def _watch(self, name: str, pid: int) -> None:
        """Creating -> InService or Failed; then InService -> Failed if the worker dies. The worker's
        cold start report (phases, activity, ComfyUIs) is copied into the endpoint as it changes."""
        deadline, reported = time.monotonic() + READY_TIMEOUT, 0.0
        # Updating without a next worker: a state.json of an earlier version of this extension.
        while (state := self._current(name, pid)) and (
                state["state"] == "Creating" or (state["state"] == "Updating" and not state.get("next"))):
            if not self._running(name, pid):
                self._fail_if_current(name, pid, f"worker exited during start-up; {self._last_lines(name)}")
                self._settle(name)
                return
            self._share(state)
            status = self._status(state.get("url"), self._headers(name))
            report = self._report(status, state)
            if status and status["state"] == "ready":
                self._set(name, state="InService", reason=None, **report)
                self._settle(name)
            elif status and status["state"] == "failed":
                self._set(name, state="Failed", reason=f"{status.get('reason')}; {self._last_lines(name)}", **report)
                self._stop(state)
                self._settle(name)
                return
            elif time.monotonic() > deadline:
                self._set(name, state="Failed", reason=f"not ready after {READY_TIMEOUT:.0f} s")
                self._settle(name)
                return
            elif report and (time.monotonic() - reported >= 0.5 or _changed(report, state)):
                reported = time.monotonic()  # byte progress: at most twice a second
                self._merge_report(name, pid, report)
            time.sleep(0.1)
        self._watch_serving(name, pid)

    def _watch_serving(self, name: str, pid: int) -> None:
        """While worker `pid` serves: Failed if it dies; its report copied; the idle stop. During a redeploy
        (`next`) the report shown is the new worker's cold start, and nothing is idle."""
        polled = time.monotonic()
        while (state := self._current(name, pid)) and state["state"] in ("InService", "Updating"):
            if not self._running(name, pid):
                self._fail_if_current(name, pid, f"worker exited; {self._last_lines(name)}")
                return
            if not self._share(state):  # a designer on another ComfyUI stopped it
                return
            if time.monotonic() - polled >= STATUS_POLL_IN_SERVICE and not state.get("next"):
                polled = time.monotonic()
                status = self._status(state.get("url"), self._headers(name))
                report = self._report(status, state)
                if report:
                    self._merge_report(name, pid, report)
                if self.idle_due(state, status):
                    self._stop_idle(name)
                    return
            time.sleep(0.5)

    def _watch_next(self, name: str, pid: int) -> None:
        """A redeploy's worker, started beside the serving one: ready -> traffic moves to it and the old one is
        retired; exited, failed or never ready -> it is stopped and the old one serves on."""
        deadline, reported = time.monotonic() + READY_TIMEOUT, 0.0
        while (state := self._pending(name, pid)) is not None and (nxt := state.get("next")) is not None:
            if not self._running(name, pid):
                self._not_deployed(name, pid, f"its worker exited during start-up; {self._last_lines(name)}")
                return
            status = self._status(nxt["url"], _header(nxt["token"]))
            report = self._report(status, state)
            if status and status["state"] == "ready":
                proofs = self._prove(name, pid, nxt)
                if proofs is not None and not proofs["passed"] and nxt.get("prove", True):
                    self._not_deployed(name, pid, summary(proofs), proofs)
                    return
                self._switch(name, pid, report, proofs)
                return
            if status and status["state"] == "failed":
                self._not_deployed(name, pid, f"{status.get('reason')}; {self._last_lines(name)}")
                return
            if time.monotonic() > deadline:
                self._not_deployed(name, pid, f"not ready after {READY_TIMEOUT:.0f} s")
                return
            if report and (time.monotonic() - reported >= 0.5 or _changed(report, state)):
                reported = time.monotonic()
                self._merge_next_report(name, pid, report)
            time.sleep(0.1)
        if not self._current(name, pid):
            self._stop_pid(pid)  # superseded, stopped or deleted meanwhile (whoever did so stopped it already)

    def _prove(self, name: str, pid: int, nxt: NextWorker) -> ProofRun | None:
        """The proofs of the environment's templates on the ready next worker (core/proofs.py), before traffic
        moves to it; a rollback's are those kept for its version. None: nothing proves it here."""
        prover = self._prover()
        if prover is None or not nxt.get("prove", True):
            return prover.results(name, nxt["version"]) if prover else None
        with self._lock:
            if (state := self._pending(name, pid)) is None:
                return None
            state = self._write({**state, "activity": f"proving version {nxt['version']} with its templates",
                                 "updated_at": now()})
        self.on_change(self.describe(state))
        headers = _header(nxt["token"])
        return prover.run(name, nxt["version"], lambda body: invoke_worker(
            name, nxt["url"], headers, body, lambda event: None, lambda: None))

    def _switch(self, name: str, pid: int, report: Report, proofs: ProofRun | None = None) -> None:
        """Traffic moves to the ready next worker in one write; the old one is retired in this thread."""
        with self._lock:
            state = self._pending(name, pid)
            if state is None or (nxt := state.get("next")) is None:
                return
            old = state.get("pid")
            was_shared = bool(state.get("shared"))
            retiring = [p for p in [*(state.get("retiring") or []), old] if p]
            state = self._write({
                **state, **report, "state": "InService", "reason": None, "pid": pid, "port": nxt["port"],
                "url": nxt["url"], "token": nxt["token"], "version": nxt["version"],
                "manifest_uri": nxt["manifest_uri"], "idle_stop_minutes": nxt["idle_stop_minutes"],
                "shared": nxt["shared"], "next": None, "retiring": retiring, "proofs": proofs,
                "proof_failed": None, "updated_at": now()})
        if was_shared and not state["shared"]:
            self._withdraw(name)
        else:
            self._share(state, force=True)  # the team's entry points at the new worker now
        self.on_change(self.describe(state))
        self._settle(name)
        if old:
            threading.Thread(target=self._retire, args=(name, old), daemon=True,
                             name=f"endpoint-{name}-retire").start()
        self._watch_serving(name, pid)

    def _retire(self, name: str, pid: int) -> None:
        """A replaced worker: stopped once this process's invocations on it have ended, or after the runs' time
        limit (self.drain_limit) if some are still going then (a run queued behind many may be one)."""
        self._inflight.wait_drained(pid, self.drain_limit)
        self._stop_pid(pid)
        with self._lock:
            state = self._read(name)
            if state is not None and pid in (state.get("retiring") or []):
                self._write({**state, "retiring": [p for p in state.get("retiring") or [] if p != pid]})

    def _not_deployed(self, name: str, pid: int, why: str, proofs: ProofRun | None = None) -> None:
        """The next worker did not start: it is stopped, the serving one goes on, the endpoint says so (in
        SageMaker's words for a rolled-back update, aws/sagemaker_endpoints.py)."""
        self._stop_pid(pid)
        with self._lock:
            state = self._pending(name, pid)
            if state is None:
                return
            nxt = state.get("next")
            version = nxt["version"] if nxt else None
            serving = _serving(state) and self._running(name, state.get("pid"))
            reason = f"version {version} did not deploy ({why}); " + (
                f"still serving version {state.get('version')}" if serving else "and no worker serves")
            state = self._write({**state, "state": "InService" if serving else "Failed", "reason": reason,
                                 "next": None, "proof_failed": proofs, "activity": None, "updated_at": now()})
        self.on_change(self.describe(state))
        self._settle(name)

    def _merge_next_report(self, name: str, pid: int, report: Report) -> None:
        """The new worker's cold start into the endpoint while it starts (what the sidebar shows as Updating)."""
        with self._lock:
            state = self._pending(name, pid)
            if state is None:
                return
            state = self._write({**state, **report, "updated_at": now()})
        self.on_change(self.describe(state))

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

    def _fail_if_current(self, name: str, pid: int, reason: str) -> None:
        """Failed, unless the endpoint was stopped, deleted or given another worker meanwhile."""
        with self._lock:
            state = self._current(name, pid)
            if state is None or state["state"] in (STOPPED, STOPPING):
                return
            state = self._write({**state, "state": "Failed", "reason": reason, "updated_at": now()})
        self._share(state, force=True)
        self.on_change(self.describe(state))

    def _merge_report(self, name: str, pid: int, report: Report) -> None:
        """The worker's report into its endpoint, only while that worker still owns it (never bringing
        back an endpoint deleted meanwhile)."""
        with self._lock:
            state = self._current(name, pid)
            if state is None:
                return
            state = self._write({**state, **report, "updated_at": now()})
        self.on_change(self.describe(state))

    def _running(self, name: str, pid: int | None) -> bool:
        return self._processes.running(pid)

    def _stop_pid(self, pid: int | None) -> None:
        self._processes.stop(pid)

    def _check_process(self, name: str) -> None:
        state = self._read(name)
        if state and state["state"] == "InService" and not self._running(name, state.get("pid")):
            self._set(name, state="Failed", reason=f"worker exited; {self._last_lines(name)}")

    def _last_lines(self, name: str, n: int = 5) -> str:
        path = self._dir(name) / "worker.log"
        try:
            lines = read_regular(path).decode(errors="replace").splitlines()[-n:] if path.exists() else []
        except (OSError, NotARegularFile) as err:
            return f"log unreadable: {message_of(err)}"
        return "last log lines: " + " | ".join(lines) if lines else "no log"

    def adopt(self) -> None:
        """After a ComfyUI restart: keep workers that still answer, restart the others. A redeploy's next worker
        is adopted too: watched on to its switch while the old one serves, or made the endpoint's worker if the
        old one is gone; replaced workers still finishing runs are stopped (their invokers went with the old
        process)."""
        for endpoint in self.list():
            state = self._read(endpoint["name"])
            if state is None or state["state"] in ("Deleting", STOPPED):
                continue
            if state["state"] == STOPPING:  # this ComfyUI stopped while it stopped the worker: finish the stop
                with self._lock:
                    self._stop(state)
                    self._write({**state, "state": STOPPED, "pid": None, "port": None, "url": None, "token": None,
                                 "activity": None, "comfyuis": [], "updated_at": now(), "next": None,
                                 "retiring": None})
                continue
            for pid in state.get("retiring") or []:
                self._stop_pid(pid)
            state["retiring"] = None
            name, nxt = state["name"], state.get("next")
            if nxt and not alive(nxt["pid"]):
                gone = "its worker was gone when ComfyUI restarted"
                state.update({"next": None, "reason": f"version {nxt['version']} did not deploy ({gone}); "
                                                      f"still serving version {state.get('version')}"})
                nxt = None
            self._write(state)
            status = self._status(state.get("url"), self._headers(name)) if alive(state.get("pid")) else None
            if status and status["state"] == "ready":
                if nxt is None and state["state"] != "InService":
                    self._set(name, state="InService", reason=None)
                threading.Thread(target=self._watch, args=(name, state["pid"]), daemon=True).start()
                if nxt is not None:
                    threading.Thread(target=self._watch_next, args=(name, nxt["pid"]), daemon=True).start()
            elif nxt is not None:  # the old worker is gone: the new one becomes the endpoint's, still starting
                self._stop_pid(state.get("pid"))
                if state.get("shared") and not nxt["shared"]:
                    self._withdraw(name)
                state.update({"state": "Creating", "reason": None, "pid": nxt["pid"], "port": nxt["port"],
                              "url": nxt["url"], "token": nxt["token"], "version": nxt["version"],
                              "manifest_uri": nxt["manifest_uri"], "idle_stop_minutes": nxt["idle_stop_minutes"],
                              "shared": nxt["shared"], "next": None})
                self._write(state)
                threading.Thread(target=self._watch, args=(name, nxt["pid"]), daemon=True).start()
                self.on_change(self.describe(state))
            elif state["state"] != "Failed" or alive(state.get("pid")):
                self._stop(state)
                state.update({"state": "Creating", "reason": None})
                self._write(state)
                self._start(state)
                self.on_change(self.describe(state))

    def stop_all(self) -> None:
        """Stop every worker (tests; ComfyUI's own exit leaves them running to be re-adopted)."""
        for endpoint in self.list():
            state = self._read(endpoint["name"])
            if state:
                self._stop(state)
