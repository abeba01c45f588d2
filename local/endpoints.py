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

This module is the life cycle (deploy, stop, start, delete, the watchers, the
adoption after a restart); its other parts are modules of their own, one class
each that LocalEndpoints is made of: what they all stand on (endpoint_base.py),
runs on a worker (endpoint_runs.py), redeploys side by side and their proof gate
(endpoint_redeploy.py), sharing with the team (endpoint_sharing.py) and the idle
stop (endpoint_idle.py).
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..core.endpoints import STOPPED, STOPPING, EndpointNotFound, EndpointStateConflict
from ..core.environments import manifest_key
from ..core.fs.files import read_regular
from ..core.idle_stop import minutes
from ..core.proofs import Prover
from ..core.records import EndpointView, Manifest
from ..core.shared_registry import Sharing
from ..core.templates import now
from ..core.worker_contract import WorkerRuntime
from .endpoint_base import READY_TIMEOUT, LocalEndpointsBase, LocalState, Report, Worker, is_serving, report_changed
from .endpoint_base import local_manifest as local_manifest  # re-exported: callers import it from here
from .endpoint_idle import IdleStop
from .endpoint_redeploy import DRAIN_LIMIT_S, SideBySideRedeploys
from .endpoint_runs import EndpointRuns
from .endpoint_sharing import EndpointSharing
from .inflight import InFlight
from .processes import Processes, alive, free_port

STATUS_POLL_IN_SERVICE = 2.0  # s between /status reads once InService (first prompts, ComfyUI restarts)
# Each worker keeps its last KEEP_RESULTS results for KEEP_MINUTES (worker/results.py): a ComfyUI restarted with
# runs in flight finds what its worker finished meanwhile (`resume`).
KEEP_RESULTS = 100
KEEP_MINUTES = 60
# The CLI's arguments that serve a worker: the worker image's ENTRYPOINT + CMD end the same way (a test
# compares them). Here the CLI is started by the extension's folder (see __main__.py), so the worker runs
# this very copy's code whether or not a package `comfyui_sagemaker` is installed.
WORKER_ARGS = ("worker", "serve")


def worker_command(python: str, extension_dir: Path) -> list[str]:
    return [python, str(extension_dir), *WORKER_ARGS]


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _constant(value: str) -> Callable[[], str]:
    return lambda: value


class LocalEndpoints(EndpointSharing, SideBySideRedeploys, IdleStop, EndpointRuns, LocalEndpointsBase):
    """The local provider of core/endpoints.py's seam: the life cycle here, the rest in the classes it is made of
    (this module's docstring names them)."""

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
        self._beats = {}
        self.root = Path(state_dir) / "endpoints"
        self.cache = Path(state_dir) / "worker-cache"
        self._store_uri = _constant(store_uri) if isinstance(store_uri, str) else store_uri
        self.runtime = runtime
        self.on_change = on_change or (lambda endpoint: None)
        self._lock = threading.RLock()
        self._processes = Processes()
        self._inflight = InFlight()
        self._settled = {}
        self.drain_limit = DRAIN_LIMIT_S
        self.clock = time.time
        # A machine serving without a ComfyUI (local/on_premises.py): its workers run one ComfyUI per GPU
        # (worker/devices.py), where a designer's own ComfyUI would use the GPU too, and never stop idle (owned
        # hardware costs nothing idle, and nobody is there to start it again).
        self.dedicated = False
        self.root.mkdir(parents=True, exist_ok=True)

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
            serving = old is not None and is_serving(old) and self._running(name, old.get("pid"))
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
            elif report and (time.monotonic() - reported >= 0.5 or report_changed(report, state)):
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
