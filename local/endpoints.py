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
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeGuard

from typing_extensions import Required, TypedDict, Unpack

from ..core.cancel_tokens import TOKEN_FIELD
from ..core.endpoints import (
    STOPPED,
    STOPPING,
    EndpointBusy,
    EndpointNotFound,
    Endpoints,
    EndpointStateConflict,
    InvocationFailed,
    RunUnknown,
)
from ..core.environments import manifest_key
from ..core.errors import SageMakerError, message_of
from ..core.executions import RESUMABLE
from ..core.fs import scratch
from ..core.fs.files import NotARegularFile, read_regular
from ..core.idle_stop import IDLE, due, minutes, parse
from ..core.names import ENVIRONMENT_NAME
from ..core.records import EndpointView, Manifest
from ..core.shapes import ShapeInvalid, validate
from ..core.shared_registry import HEARTBEAT_S, Sharing
from ..core.templates import now
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


class Report(TypedDict, total=False):
    """What a local endpoint carries from its worker's /status (worker/coldstart.py says what they hold)."""

    phases: list[dict[str, Any]] | None
    activity: str | None
    comfyuis: list[dict[str, Any]] | None


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


class LocalChange(Report, total=False):
    state: str
    reason: str | None


def _changed(report: Report, state: LocalState) -> bool:
    """Whether the worker's phases or ComfyUIs differ from the endpoint's (its activity line changes often)."""
    return report.get("phases") != state.get("phases") or report.get("comfyuis") != state.get("comfyuis")


def worker_command(python: str, extension_dir: Path) -> list[str]:
    return [python, str(extension_dir), *WORKER_ARGS]


def _free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


log = logging.getLogger("comfyui_sagemaker")


def _constant(value: str) -> Callable[[], str]:
    return lambda: value


def _alive(pid: int | None) -> TypeGuard[int]:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


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
                 sharing: Callable[[], Sharing | None] = lambda: None):
        """`store_uri`: where new deploys read their environment; a function for the process's one owner
        (core/local_supervisor.py), whose store is that of the configuration that runs now. `sharing`: that
        configuration's registry of shared endpoints and share_host (None: nothing can be shared)."""
        self._sharing = sharing
        self._beats: dict[str, tuple[float, str]] = {}  # name -> (monotonic time, state) of its last heartbeat
        self.root = Path(state_dir) / "endpoints"
        self.cache = Path(state_dir) / "worker-cache"
        self._store_uri = _constant(store_uri) if isinstance(store_uri, str) else store_uri
        self.runtime = runtime
        self.on_change = on_change or (lambda endpoint: None)
        self._lock = threading.RLock()
        self._procs: dict[str, subprocess.Popen] = {}
        self.clock: Callable[[], float] = time.time  # the idle stop's (tests set a fake one)
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
        token = state.get("token") if state else None
        return {TOKEN_HEADER: token} if token else {}

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

    def deploy(self, manifest: Manifest) -> EndpointView:
        name, version = manifest["name"], manifest["version"]
        key = manifest_key(name, version)
        config = manifest.get("endpoint")
        asked = config.get("shared") if config else None
        with self._lock:
            old = self._read(name)
            # Sharing sticks to the endpoint through redeploys of configs that do not say (false is never stored):
            # only the Share switch's explicit false makes it private again.
            shared = asked if asked is not None else bool(old and old.get("shared"))
            if shared:
                self._check_share(name)
            if old and old.get("version") == version and old["state"] in ("Creating", "InService") \
                    and _alive(old.get("pid")) and bool(old.get("shared")) == shared:
                return self.describe(old)
            if old:
                self._stop(old)
                if old.get("shared") and not shared:
                    self._withdraw(name)
            state = self._write({
                "name": name, "kind": "local", "state": "Updating" if old else "Creating", "environment": name,
                "version": version, "manifest_uri": f"{self._store_uri()}/{key}", "reason": None,
                "created_at": (old.get("created_at") if old else None) or now(), "updated_at": now(),
                "idle_stop_minutes": minutes(manifest.get("endpoint")), "stopped_at": None, "stopped_by": None,
                "shared": shared,
            })
            self._start(state)
        self.on_change(self.describe(state))
        return self.describe(state)

    def delete(self, name: str) -> None:
        state = self._read(name)
        if state is None:
            raise EndpointNotFound(f"no endpoint runs environment {name!r}")
        self._set(name, state="Deleting")
        with self._lock:
            self._stop(state)
            shutil.rmtree(self._dir(name), ignore_errors=True)
        if state.get("shared"):
            self._withdraw(name)
        self.on_change({"name": state["name"], "kind": "local", "state": "Deleted"})

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
                                 "stopped_at": stamp, "stopped_by": by})
        if state.get("shared"):
            self._withdraw(name)
        self.on_change(self.describe(state))
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
        url = self.check_ready(name).get("url") or ""
        return invoke_worker(name, url, self._headers(name), body, on_event, lambda: self._check_process(name),
                             resumable=True)

    def resume(self, name: str, execution_id: str, resume: dict[str, Any],
               on_event: Callable[[WorkerEvent], None]) -> WorkerResult:
        """A run this ComfyUI invoked before it was restarted: its worker kept its result (worker/results.py) and
        answers it, once the run has ended if it is still going. RunUnknown if the worker that ran it is gone
        (stopped, restarted, redeployed) or no longer has it. Its events were the stream's: none are relayed."""
        import requests  # lazily: importing the extension stays light

        state = self._read(name)
        url = state.get("url") if state else None
        if state is None or not url or not self._running(name, state.get("pid")):
            what = "is gone" if state is None else f"is {state['state'].lower()}, its worker that ran the run gone"
            raise RunUnknown(f"endpoint {name} {what}")
        try:
            # No read timeout: the worker answers when the run ends, within the run's own time limit.
            r = requests.post(url + "/invocations", data=json.dumps({"action": "result", "execution_id": execution_id}),
                              timeout=(10, None), headers={"Content-Type": "application/json", **self._headers(name)})
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

    def cancel(self, name: str, execution_id: str, token: str) -> None:
        """Ask the worker to interrupt (or skip) an execution, with the run's cancel token; best effort."""
        try:
            url = self.get(name).get("url")
        except EndpointNotFound:
            return
        cancel_at_worker(url, self._headers(name), execution_id, token)

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
            sharing.registry.beat(name, state.get("version"), state["state"], state.get("url"), sharing.instance,
                                  sharing.owner, state.get("token"))
        except Exception as err:  # the store unreachable now: the next beat tries again; readers see it expire
            log.warning("comfyui-sagemaker: shared endpoint %s: heartbeat failed: %s", name, message_of(err))
        return True

    # processes

    def _start(self, state: LocalState) -> None:
        folder = self._dir(state["name"])
        host = self._check_share(state["name"]).host if state.get("shared") else "127.0.0.1"
        port = _free_port(host)
        token = state["token"] = secrets.token_urlsafe(32)  # a new worker, a new secret
        env = {
            **os.environ,
            "SAGEMAKER_MANIFEST_URI": state["manifest_uri"],
            "SAGEMAKER_BIND_TO_PORT": str(port),
            # Beyond loopback only when shared, and then on the one address the designer chose (share_host).
            "WORKER_HOST": host,
            "WORKER_CACHE_DIR": str(self.cache),
            "WORKER_BASE_DIR": str(folder / "base"),
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
            or ("" if os.environ.get("WORKER_DEVICES") else "1"),
        }
        log = open(folder / "worker.log", "ab")
        proc = subprocess.Popen(worker_command(self.runtime.python, self.runtime.extension_dir), env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self._procs[state["name"].lower()] = proc
        state.update({"pid": proc.pid, "port": port, "url": _url(host, port)})
        self._write(state)
        threading.Thread(target=self._watch, args=(state["name"], proc.pid), daemon=True,
                         name=f"endpoint-{state['name']}").start()

    def _stop(self, state: LocalState) -> None:
        pid = state.get("pid")
        proc = self._procs.pop(state["name"].lower(), None)
        if _alive(pid):
            try:
                os.killpg(pid, signal.SIGINT)
            except OSError:
                pass
            deadline = time.monotonic() + 20
            while _alive(pid) and time.monotonic() < deadline:
                if proc is not None and proc.poll() is not None:
                    break
                time.sleep(0.05)
            if _alive(pid) and (proc is None or proc.poll() is None):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

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

    @staticmethod
    def _report(status: WorkerReport | None, state: LocalState) -> Report:
        """The worker's report fields that changed since `state` (nothing when /status did not answer)."""
        if not status:
            return {}
        fresh: Report = {"phases": status.get("phases"), "activity": status.get("activity"),
                         "comfyuis": status.get("comfyuis")}
        return fresh if _changed(fresh, state) or fresh["activity"] != state.get("activity") else {}

    def _watch(self, name: str, pid: int) -> None:
        """Creating/Updating -> InService or Failed; then InService -> Failed if the worker dies. The worker's
        cold start report (phases, activity, ComfyUIs) is copied into the endpoint as it changes."""
        deadline, reported = time.monotonic() + READY_TIMEOUT, 0.0
        while (state := self._current(name, pid)) and state["state"] in ("Creating", "Updating"):
            if not self._running(name, pid):
                self._fail_if_current(name, pid, f"worker exited during start-up; {self._last_lines(name)}")
                return
            self._share(state)
            status = self._status(state.get("url"), self._headers(name))
            report = self._report(status, state)
            if status and status["state"] == "ready":
                self._set(name, state="InService", reason=None, **report)
            elif status and status["state"] == "failed":
                self._set(name, state="Failed", reason=f"{status.get('reason')}; {self._last_lines(name)}", **report)
                self._stop(state)
                return
            elif time.monotonic() > deadline:
                self._set(name, state="Failed", reason=f"not ready after {READY_TIMEOUT:.0f} s")
                return
            elif report and (time.monotonic() - reported >= 0.5 or _changed(report, state)):
                reported = time.monotonic()  # byte progress: at most twice a second
                self._merge_report(name, pid, report)
            time.sleep(0.1)
        polled = time.monotonic()
        while (state := self._current(name, pid)) and state["state"] == "InService":
            if not self._running(name, pid):
                self._fail_if_current(name, pid, f"worker exited; {self._last_lines(name)}")
                return
            if not self._share(state):  # a designer on another ComfyUI stopped it
                return
            if time.monotonic() - polled >= STATUS_POLL_IN_SERVICE:
                polled = time.monotonic()
                status = self._status(state.get("url"), self._headers(name))
                report = self._report(status, state)
                if report:
                    self._merge_report(name, pid, report)
                if self.idle_due(state, status):
                    self._stop_idle(name)
                    return
            time.sleep(0.5)

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
        proc = self._procs.get(name.lower())
        if proc is not None and proc.pid == pid:
            return proc.poll() is None
        return _alive(pid)

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
        """After a ComfyUI restart: keep workers that still answer, restart the others."""
        for endpoint in self.list():
            state = self._read(endpoint["name"])
            if state is None or state["state"] in ("Deleting", STOPPED):
                continue
            if state["state"] == STOPPING:  # this ComfyUI stopped while it stopped the worker: finish the stop
                with self._lock:
                    self._stop(state)
                    self._write({**state, "state": STOPPED, "pid": None, "port": None, "url": None, "token": None,
                                 "activity": None, "comfyuis": [], "updated_at": now()})
                continue
            status = self._status(state.get("url"), self._headers(state["name"])) \
                if _alive(state.get("pid")) else None
            if status and status["state"] == "ready":
                if state["state"] != "InService":
                    self._set(state["name"], state="InService", reason=None)
                threading.Thread(target=self._watch, args=(state["name"], state["pid"]), daemon=True).start()
            elif state["state"] != "Failed" or _alive(state.get("pid")):
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
