"""A local endpoint's redeploy side by side, as SageMaker updates an endpoint.

A redeploy while a worker serves (another version, or a version that did not deploy before) starts the new worker
beside it (LocalEndpoints.deploy): the endpoint is Updating and keeps its serving worker (url, pid, secret, version)
with the new one in `next`. Once that one is ready its templates' proofs run on it (core/proofs.py; not for a
rollback), then traffic moves to it in one write of `state.json`, and the old worker is stopped when the
invocations this process sent it have ended (or after DRAIN_LIMIT_S). A new worker that does not start, or fails
its proofs, is stopped and the old one serves on, the endpoint saying "version N did not deploy (...); still
serving version M".
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from ..core.proofs import Prover, summary
from ..core.records import ProofRun
from ..core.templates import now
from .endpoint_base import (
    READY_TIMEOUT,
    LocalEndpointsBase,
    NextWorker,
    Report,
    is_serving,
    report_changed,
    token_header,
)
from .endpoint_runs import invoke_worker

# How long a replaced worker may go on with this process's invocations before it is stopped anyway: the runs'
# own time limit (the worker's WORKER_INVOCATION_TIMEOUT, which its process inherits from this one).
DRAIN_LIMIT_S = float(os.environ.get("WORKER_INVOCATION_TIMEOUT") or 3600)


class SideBySideRedeploys(LocalEndpointsBase):
    """LocalEndpoints' redeploys: `_prover` gives the configuration's templates' proofs (None: none);
    `drain_limit` how long a replaced worker may finish this process's runs."""

    _prover: Callable[[], Prover | None]
    drain_limit: float

    def _watch_next(self, name: str, pid: int) -> None:
        """A redeploy's worker, started beside the serving one: ready -> traffic moves to it and the old one is
        retired; exited, failed or never ready -> it is stopped and the old one serves on."""
        deadline, reported = time.monotonic() + READY_TIMEOUT, 0.0
        while (state := self._pending(name, pid)) is not None and (nxt := state.get("next")) is not None:
            if not self._running(name, pid):
                self._not_deployed(name, pid, f"its worker exited during start-up; {self._last_lines(name)}")
                return
            status = self._status(nxt["url"], token_header(nxt["token"]))
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
            if report and (time.monotonic() - reported >= 0.5 or report_changed(report, state)):
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
        headers = token_header(nxt["token"])
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
            serving = is_serving(state) and self._running(name, state.get("pid"))
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

