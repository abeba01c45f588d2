"""FakeEndpoints: an in-process endpoint provider that keeps core/endpoints.py's contract, so the services
above it (executions, Comfy API v2 jobs, webhooks, team mode) are unit-tested without a worker process.
tests/unit/test_endpoints_contract.py runs the same behavioural checks on it and on LocalEndpoints with a
real worker: the fake cannot drift from the real one. Only tests use it, so it lives here.

As a local endpoint and its worker behave:
- `deploy` answers Creating at once; the endpoint becomes InService in a thread of its own, or when the test
  says so (`hold_starts`, `ready`, `fail`). Another version deployed while it serves answers Updating: the
  old version goes on serving (its runs, and runs sent meanwhile) until the new one is `ready` (traffic moves:
  InService on the new version) or `fail`s (InService on the old one, the reason "version N did not deploy
  (...); still serving version M"). With nothing serving a redeploy is Creating. `when_settled` calls back
  once a start or an update has ended. stop, start and delete as LocalEndpoints; `on_change(view)` on each
  change, `{"name", "kind", "state": "Deleted"}` once deleted.
- `invoke` checks the body and the inputs as the worker does (bad_request; input_missing unless each input
  is a blob in the store) and plays the run as the worker and its ComfyUI do (tests/harness/fake_runs.py:
  ComfyUI's events in their order, output files put in the store by content, the worker's result; the test
  pack's SMTestWait and SMTestFail behave as in a real ComfyUI).
- One run at a time per endpoint (a local endpoint runs one ComfyUI; `slots` for more), the others queued
  in arrival order.
- `cancel` needs the run's cancel token (core/cancel_tokens.py): a running run is interrupted
  (execution_interrupted, failed `interrupted`), a queued one ends `cancelled` without events, a wrong token
  changes nothing, and a cancel that comes before its invocation is kept for it.
- The worker dying (`kill`), the endpoint stopped or deleted: the invocations in flight raise
  InvocationFailed; killed, the endpoint is Failed. A redeploy ends none of them.

For tests: `manual = True` makes each run wait for the test's word (FakeRun: emit, progress, executed_node,
succeed, fail, interrupt, answer, die), `run(execution_id)` / `next_run()` find a run once invoked,
`cancels` and `invocations` say what reached the endpoint. A run is answered to another follower (`resume`) as
the real endpoints do (`resumable`, on by default): once accepted it says so (sagemaker.resumable), and `resume`
answers it, waiting while it goes on; a local one as a local endpoint's worker keeps its results (its result
only, RunUnknown once the worker that ran it is gone, or after `forget`), another kind as SageMaker's async
endpoints (its events too). `resumable = False` stands for a real-time stream, answered to its invoker only.
`FakeRun.sever()` is its first follower killed.
Every wait has a deadline: a test that forgets a run fails instead of hanging.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from comfyui_sagemaker.core import cancel_tokens
from comfyui_sagemaker.core.endpoints import (
    STOPPED,
    EndpointNotFound,
    Endpoints,
    EndpointStateConflict,
    InvocationFailed,
    RunUnknown,
)
from comfyui_sagemaker.core.store import DIGEST_RE, blob_key
from comfyui_sagemaker.core.templates import now

from .fake_runs import DEADLINE, Died, FakeRun

MAX_ID = 128  # the worker's limit on execution ids (worker/cancels.py)


def failed(execution_id: object, code: str, message: str, **extra) -> dict:
    """A result the worker answers without running the prompt (what LocalEndpoints.invoke returns for it)."""
    return {"execution_id": execution_id, "status": "failed", "outputs": {},
            "error": {"code": code, "message": message, **extra}}


class FakeEndpoints(Endpoints):
    """`store` receives output files (and is where inputs must be); `kind` is the kind it stands for."""

    def __init__(self, store=None, kind: str = "local", on_change: Callable[[dict], None] | None = None,
                 slots: int = 1, hold_starts: bool = False):
        self.store = store
        self.kind = kind
        self.on_change = on_change or (lambda endpoint: None)
        self.store_uri = ""  # set by Services, as on LocalEndpoints
        self.slots = slots
        self.hold_starts = hold_starts  # deploys stay Creating until `ready` (or `fail`)
        self.prover = None  # core.proofs.Prover: a redeploy's proofs run on the new version before traffic moves
        self.lacking: dict[int, set[str]] = {}  # version -> node types its ComfyUI lacks (refused as ComfyUI does)
        self.manual = False  # runs wait for the test's word instead of playing their prompt
        self.resumable = True  # runs say how to follow them (sagemaker.resumable) and `resume` answers them
        self._forgotten: set[str] = set()  # results the worker no longer keeps (forget)
        self.invocations: list[dict] = []  # every body invoked, in order
        self.cancels: list[dict] = []  # {endpoint, execution_id, outcome: running|queued|refused|unknown}
        self._endpoints: dict[str, dict] = {}
        self._all: list[FakeRun] = []
        self._early: dict[str, str] = {}  # execution id -> digest of a cancel that came before its run
        self._logs: dict[str, list[str]] = {}
        self._settled: dict[str, list[Callable[[], None]]] = {}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._closed = threading.Event()

    # state

    @staticmethod
    def _key(name: str) -> str:
        return name.lower()

    def _state(self, name: str) -> dict:
        state = self._endpoints.get(self._key(name))
        if state is None:
            raise EndpointNotFound(f"no endpoint runs environment {name!r}")
        return state

    @staticmethod
    def describe(state: dict) -> dict:
        return {k: state.get(k) for k in ("name", "kind", "state", "environment", "version", "url", "reason",
                                          "created_at", "updated_at", "phases", "activity", "comfyuis", "proofs",
                                          "proof_failed")}

    def _set(self, name: str, **fields) -> dict:
        with self._lock:
            state = self._state(name)
            state.update(fields, updated_at=now())
            view = self.describe(state)
            self._changed.notify_all()
        self.on_change(view)
        return view

    def _log(self, name: str, line: str) -> None:
        with self._lock:
            self._logs.setdefault(self._key(name), []).append(f"{time.strftime('%H:%M:%S')} {line}")

    def _live(self, name: str | None = None) -> list[FakeRun]:
        return [r for r in self._all if r.state != "ended" and (name is None or r.endpoint.lower() == name.lower())]

    # the seam

    def list(self) -> list[dict]:
        with self._lock:
            return [self.describe(self._endpoints[k]) for k in sorted(self._endpoints)]

    def get(self, name: str) -> dict:
        with self._lock:
            return self.describe(self._state(name))

    def deploy(self, manifest: dict, prove: bool = True) -> dict:
        name, version = manifest["name"], manifest["version"]
        with self._lock:
            old = self._endpoints.get(self._key(name))
            serving = old is not None and old["state"] in ("InService", "Updating") and old.get("url")
            if old and old["version"] == version and (serving or old["state"] == "Creating"):
                if not old.get("next"):
                    return self.describe(old)
                old.update(state="InService", next=None, reason=None, starts=old["starts"] + 1)  # update dropped
                view, settled = self.describe(old), True
            elif old and serving and (old.get("next") or {}).get("version") == version:
                return self.describe(old)  # this very update is under way
            elif old and serving:
                old.update(state="Updating", reason=None, starts=old["starts"] + 1,
                           next={"version": version, "prove": prove}, proof_failed=None, updated_at=now())
                view, settled = self.describe(old), False
            else:
                if old:
                    self._end_runs(name, "the worker was replaced by a deploy")
                old = {"name": name, "kind": self.kind, "state": "Creating", "environment": name,
                       "version": version, "url": None, "reason": None, "phases": [], "activity": None,
                       "comfyuis": [], "created_at": (old or {}).get("created_at") or now(), "updated_at": now(),
                       "starts": (old or {}).get("starts", 0) + 1, "next": None}
                self._endpoints[self._key(name)] = old
                view, settled = self.describe(old), False
            self._log(name, f"deploying {name} v{version}")
            self._changed.notify_all()
        self.on_change(view)
        if settled:
            self._settle(name)
        else:
            self._starting(name, old["starts"])
        return view

    def when_settled(self, name: str, done: Callable[[], None]) -> None:
        with self._lock:
            state = self._endpoints.get(self._key(name))
            if state is not None and (state["state"] == "Creating" or state.get("next")):
                self._settled.setdefault(self._key(name), []).append(done)
                return
        done()

    def _settle(self, name: str) -> None:
        with self._lock:
            waiting = self._settled.pop(self._key(name), [])
        for done in waiting:
            done()

    def delete(self, name: str) -> None:
        with self._lock:
            state = self._state(name)
        self._set(name, state="Deleting")
        with self._lock:
            self._end_runs(name, "the endpoint was deleted")
            self._endpoints.pop(self._key(name), None)
            self._logs.pop(self._key(name), None)
            self._changed.notify_all()
        self.on_change({"name": state["name"], "kind": self.kind, "state": "Deleted"})
        self._settle(name)

    def stop(self, name: str) -> dict:
        with self._lock:
            state = self._state(name)
            if state["state"] in (STOPPED, "Deleting"):
                raise EndpointStateConflict(f"endpoint {state['name']} is {state['state'].lower()} already")
            self._end_runs(name, "the endpoint was stopped")
            self._log(name, "stopped")
        view = self._set(name, state=STOPPED, reason=None, url=None, activity=None, comfyuis=[], next=None)
        self._settle(name)
        return view

    def start(self, name: str) -> dict:
        with self._lock:
            state = self._state(name)
            if state["state"] != STOPPED:
                what = "running already" if state["state"] in ("Creating", "Updating", "InService") else \
                    f"{state['state']}, not stopped: deploy its environment again instead"
                raise EndpointStateConflict(f"endpoint {state['name']} is {what}")
            state["starts"] += 1
            starts = state["starts"]
        view = self._set(name, state="Creating", reason=None, phases=[])
        self._starting(name, starts)
        return view

    def logs(self, name: str, tail: int = 200, contains: str | None = None) -> str:
        with self._lock:
            self._state(name)
            lines = list(self._logs.get(self._key(name), []))
        if contains:
            lines = [line for line in lines if contains.lower() in line.lower()]
        return "\n".join(lines[-tail:]) + ("\n" if lines else "") if tail else ""

    def invoke(self, name: str, body: dict, on_event: Callable[[dict], None]) -> dict:
        endpoint = self.check_ready(name)
        with self._lock:
            self.invocations.append(body)
        problem = self._refusal(body)
        if problem is not None:
            return problem
        run = FakeRun(endpoint["name"], body, self.store, self.manual)
        inbox = run.follow()
        with self._lock:
            early = self._early.pop(run.execution_id, None) if run.execution_id else None
            if early is not None and run.digest is not None and early == run.digest:
                run.cancelled = "queued"  # its cancel came first, with its token
            self._all.append(run)
            self._log(name, f"invocation {run.execution_id}")
            self._changed.notify_all()
        threading.Thread(target=self._play, args=(run,), daemon=True,
                         name=f"fake-run-{run.execution_id[:24]}").start()
        return self._relay(run, inbox, on_event)

    def resume(self, name: str, execution_id: str, resume: dict, on_event: Callable[[dict], None]) -> dict:
        if not self.resumable:
            return super().resume(name, execution_id, resume, on_event)
        if self.kind == "local":
            return self._kept(name, execution_id)
        self.get(name)
        with self._lock:
            found = [r for r in self._all if r.execution_id == execution_id]
        if not found or resume.get("execution_id") != execution_id:
            raise InvocationFailed(f"the run {execution_id} cannot be followed: where its result lands is unknown")
        run = found[-1]
        return self._relay(run, run.follow(), on_event)

    def _kept(self, name: str, execution_id: str) -> dict:
        """As LocalEndpoints.resume: the worker's kept result, once the run has ended (no events)."""
        with self._lock:
            state = self._endpoints.get(self._key(name))
            found = [r for r in self._all if r.execution_id == execution_id and r.endpoint.lower() == name.lower()]
            if state is None or state["state"] not in ("InService", "Updating") or not found \
                    or execution_id in self._forgotten:
                raise RunUnknown(f"endpoint {name}'s worker has no run {execution_id}")
        run = found[-1]
        result = run.wait_ended(DEADLINE * 5)
        if result is None or execution_id in self._forgotten:  # its worker died with it
            raise RunUnknown(f"endpoint {name}'s worker that ran {execution_id} is gone")
        return result

    def forget_result(self, execution_id: str) -> None:
        """The worker no longer keeps that run's result (kept past its limit): `resume` raises RunUnknown."""
        with self._lock:
            self._forgotten.add(execution_id)

    def cancel(self, name: str, execution_id: str, token: str) -> None:
        """Best effort, as LocalEndpoints' (which does not look at the worker's answer)."""
        with self._lock:
            if self._key(name) not in self._endpoints:
                return
            runs = [r for r in self._live(name) if r.execution_id == execution_id and r.state != "ending"]
            if not runs:
                if cancel_tokens.is_token(token):
                    self._early[execution_id] = cancel_tokens.digest_of(token)
                outcome = "unknown"
            else:
                hit = [r for r in runs if cancel_tokens.matches(token, r.digest)]
                outcome = "refused" if not hit else hit[-1].state
                for run in hit:
                    run.cancelled_by_token()
                self._changed.notify_all()
            self.cancels.append({"endpoint": name, "execution_id": execution_id, "outcome": outcome})
            self._log(name, f"cancel {execution_id}: {outcome}")

    # what only tests call

    def rollback(self, manifest: dict) -> dict:
        return self.deploy(manifest, prove=False)  # as LocalEndpoints: back to a version artists ran on, unproven

    def ready(self, name: str) -> dict:
        """A held start (hold_starts) ends: InService (on the new version, for an update, once its proofs pass:
        else the old version serves on, as LocalEndpoints does)."""
        self._log(name, "worker ready in 0.0 s (ComfyUI 0 first; 1 in all)")
        with self._lock:
            nxt = self._state(name).get("next")
            version = nxt["version"] if nxt else self._state(name)["version"]
            starts = self._state(name)["starts"]
        proofs = None
        if nxt and self.prover is not None:
            if nxt.get("prove", True):
                proofs = self.prover.run(name, version, lambda body: self._on_version(version, body))
                if not proofs["passed"]:
                    from comfyui_sagemaker.core.proofs import summary

                    self._set(name, proof_failed=proofs)
                    return self.fail(name, summary(proofs))
            else:
                proofs = self.prover.results(name, version)
        view = self._set(name, state="InService", reason=None, version=version, next=None, proofs=proofs,
                         proof_failed=None,
                         url=f"http://fake.invalid/{self._key(name)}/{starts}",
                         comfyuis=[{"index": 0, "state": "ready"}])
        self._settle(name)
        return view

    def fail(self, name: str, reason: str) -> dict:
        """The endpoint failed (its worker could not start, or died): Failed with `reason`. During an update,
        the new version's worker failed: the old one serves on, and the endpoint says so."""
        with self._lock:
            state = self._state(name)
            nxt = state.get("next")
            if not nxt:
                self._end_runs(name, reason)
        if nxt:
            serving = state["state"] in ("InService", "Updating")
            view = self._set(name, state="InService" if serving else "Failed", next=None,
                             reason=f"version {nxt['version']} did not deploy ({reason}); " +
                             (f"still serving version {state['version']}" if serving else "and no worker serves"))
        else:
            view = self._set(name, state="Failed", reason=reason)
        self._settle(name)
        return view

    def kill(self, name: str) -> dict:
        """The worker dies: its runs' invocations fail, the endpoint is Failed (as LocalEndpoints' watcher says)."""
        self._log(name, "killed")
        reason = "worker exited; last log lines: killed"
        with self._lock:
            self._end_runs(name, reason)
        return self._set(name, state="Failed", reason=reason)  # a redeploy's worker, if any, starts on

    def run(self, execution_id: str, timeout: float = DEADLINE) -> FakeRun:
        """The (last) run of that execution, once it has been invoked."""
        with self._changed:
            assert self._changed.wait_for(lambda: any(r.execution_id == execution_id for r in self._all), timeout), \
                f"execution {execution_id} never reached the endpoint"
            return [r for r in self._all if r.execution_id == execution_id][-1]

    def next_run(self, after: int = 0, timeout: float = DEADLINE) -> FakeRun:
        """The run invoked after `after` others (the first by default)."""
        with self._changed:
            assert self._changed.wait_for(lambda: len(self._all) > after, timeout), "no run reached the endpoint"
            return self._all[after]

    def runs(self) -> list[FakeRun]:
        with self._lock:
            return list(self._all)

    def wait_state(self, name: str, states: tuple[str, ...] = ("InService", "Failed"),
                   timeout: float = DEADLINE) -> dict:
        with self._changed:
            ok = self._changed.wait_for(
                lambda: (self._endpoints.get(self._key(name)) or {}).get("state") in states, timeout)
            assert ok, f"endpoint {name} never {' or '.join(states)}: {self._endpoints.get(self._key(name))}"
            return self.describe(self._endpoints[self._key(name)])

    def adopt(self) -> None:
        """Nothing to re-adopt: nothing of it outlives a test."""

    def stop_all(self) -> None:
        self.close()

    def close(self) -> None:
        """Every run dies (its followers, a severed invoker too, get InvocationFailed): nothing outlives the test."""
        self._closed.set()
        with self._lock:
            runs = self._live()
            for run in runs:
                run.lose("the fake endpoints were closed")
            self._changed.notify_all()
        for run in runs:
            run.ended.wait(DEADLINE)

    # inside

    def _starting(self, name: str, starts: int) -> None:
        if self.hold_starts:
            return

        def become_ready() -> None:
            with self._lock:
                state = self._endpoints.get(self._key(name))
                starting = state is not None and (state["state"] == "Creating" or state.get("next"))
                if not starting or state["starts"] != starts:
                    return  # stopped, deleted or deployed again meanwhile
            self.ready(name)

        threading.Thread(target=become_ready, daemon=True, name=f"fake-start-{name}").start()

    def _on_version(self, version: int, body: dict) -> dict:
        """A run on a redeploy's new worker (its proofs): played at once, beside the serving worker's runs; a node
        type that version lacks is refused as ComfyUI's validation does."""
        for node_id, node in body["prompt"].items():
            if node.get("class_type") in self.lacking.get(version, set()):
                message = f"Cannot execute because node {node['class_type']} does not exist."
                return failed(body.get("execution_id"), "prompt_invalid", message, details={
                    "error": {"type": "invalid_prompt", "message": message}, "node_errors": {node_id: {
                        "errors": [{"message": message, "details": f"Node ID '#{node_id}'"}],
                        "class_type": node["class_type"]}}})
        run = FakeRun("next", body, self.store)
        run.begin()
        return run.play()

    def _end_runs(self, name: str, why: str) -> None:
        """The worker is gone (called under the lock): its runs die, queued ones too."""
        for run in self._live(name):
            run.lose(why)
        self._changed.notify_all()

    def _refusal(self, body: object) -> dict | None:
        """What worker/server.py answers before running anything (as LocalEndpoints.invoke returns it)."""
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), dict) or not body["prompt"]:
            return failed(None, "bad_request", "body must be {execution_id, prompt: {...}, inputs: {name: sha256}}")
        execution_id = body.get("execution_id") or ""
        if not isinstance(execution_id, str) or len(execution_id) > MAX_ID:
            return failed(None, "bad_request", f"execution_id must be a string of at most {MAX_ID} characters")
        digest = body.get(cancel_tokens.DIGEST_FIELD)
        if digest is not None and not cancel_tokens.is_digest(digest):
            return failed(execution_id, "bad_request", f"{cancel_tokens.DIGEST_FIELD} must be a lowercase hex sha256")
        inputs = body.get("inputs") or {}
        if not isinstance(inputs, dict) or not all(isinstance(v, str) for v in inputs.values()):
            return failed(execution_id, "bad_request", "inputs must be {filename: sha256}")
        for file, sha in inputs.items():
            if not DIGEST_RE.fullmatch(sha) or (self.store is not None and not self.store.exists(blob_key(sha))):
                return failed(execution_id, "input_missing", f"input {file}: blob {sha} is not in the store")
        return None

    def _relay(self, run: FakeRun, inbox: queue.Queue, on_event: Callable[[dict], None]) -> dict:
        """A follower's side: the run's events in order, then its result (InvocationFailed if the worker died)."""
        try:
            while True:
                try:
                    item = inbox.get(timeout=DEADLINE * 2)
                except queue.Empty:
                    raise InvocationFailed(f"endpoint {run.endpoint} sent nothing for {DEADLINE * 2:.0f} s") from None
                if item[0] == "event":
                    try:
                        on_event(item[1])
                    finally:
                        if item[2] is not None:
                            item[2]()
                elif item[0] == "result":
                    return item[1]
                elif item[0] == "severed":  # this follower's process is dead: it hears nothing more
                    self._closed.wait(DEADLINE * 5)
                    raise InvocationFailed(f"endpoint {run.endpoint} stopped answering (its follower was killed)")
                else:
                    raise InvocationFailed(f"endpoint {run.endpoint} closed the stream without a result (did the "
                                           "worker die?)")
        finally:
            run.unfollow(inbox)

    def _play(self, run: FakeRun) -> None:
        """The worker's side of one run: queued, then its prompt played (or the test's word), then its result."""
        try:
            if self.resumable:  # accepted: a local worker keeps its result, an async one's lands in S3
                resume = {"kind": "local", "kept_s": 3600} if self.kind == "local" else \
                    {"execution_id": run.execution_id}
                run.send({"type": "sagemaker.resumable", "data": {"resume": resume}}, keep=False)
            if not self._acquire(run):
                result = run.result_body("failed", {"code": "cancelled", "message": "cancelled"})
            else:
                try:
                    result = run.play()
                finally:
                    with self._changed:
                        run.state = "ending"
                        self._changed.notify_all()
            self._log(run.endpoint, f"run {run.execution_id} ended: {result.get('status')}")
            run.finish(result)
        except Died:
            self._log(run.endpoint, f"run {run.execution_id} lost: {run.dying}")
            run.finish(None)
        except BaseException:
            run.finish(None)
            raise
        finally:
            with self._changed:
                self._changed.notify_all()

    def _acquire(self, run: FakeRun) -> bool:
        """A ComfyUI for the run, in arrival order; False if it was cancelled while queued; Died if the worker
        went away meanwhile."""
        with self._changed:
            while True:
                if run.dying:
                    raise Died()
                if run.cancelled:
                    return False
                live = self._live(run.endpoint)
                running = [r for r in live if r.state in ("running", "ending")]
                queued = [r for r in live if r.state == "queued" and not r.cancelled and not r.dying]
                if len(running) < self.slots and queued and queued[0] is run:
                    run.begin()
                    self._changed.notify_all()
                    return True
                self._changed.wait(0.05)
