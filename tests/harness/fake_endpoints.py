"""FakeEndpoints: an in-process endpoint provider that keeps core/endpoints.py's contract, so the services
above it (executions, Comfy API v2 jobs, webhooks, team mode) are unit-tested without a worker process.
tests/unit/test_endpoints_contract.py runs the same behavioural checks on it and on LocalEndpoints with a
real worker: the fake cannot drift from the real one. Only tests use it, so it lives here.

As a local endpoint and its worker behave:
- `deploy` answers Creating (Updating for another version) at once; the endpoint becomes InService in a
  thread of its own, or when the test says so (`hold_starts`, `ready`, `fail`). stop, start and delete as
  LocalEndpoints; `on_change(view)` on each change, `{"name", "kind", "state": "Deleted"}` once deleted.
- `invoke` runs the prompt as the worker's ComfyUI would: ComfyUI's events in their order (execution_start,
  execution_cached, executing and progress_state per node, executed for each output node with its files put
  in the store by content as worker/outputs.py does, then execution_success), then the result
  worker/server.py answers. A prompt without an output node is refused (prompt_invalid), inputs must be in
  the store (input_missing), and the body is checked as the worker checks it. The test pack's nodes
  (tests/fixtures/sm_test_pack) behave as in a real ComfyUI: SMTestWait holds the run until its signal file
  exists (or `FakeRun.release()`), SMTestFail fails it in that node with its message.
- One run at a time per endpoint (a local endpoint runs one ComfyUI; `slots` for more), the others queued
  in arrival order.
- `cancel` needs the run's cancel token (core/cancel_tokens.py): a running run is interrupted
  (execution_interrupted, failed `interrupted`), a queued one ends `cancelled` without events, a wrong token
  changes nothing, and a cancel that comes before its invocation is kept for it.
- The worker dying (`kill`), the endpoint stopped, deleted or redeployed: the invocations in flight raise
  InvocationFailed; killed, the endpoint is Failed.

For tests: `manual = True` makes each run wait for the test's word (FakeRun: emit, progress, executed,
succeed, fail, interrupt, answer, die), `run(execution_id)` / `next_run()` find a run once invoked,
`cancels` and `invocations` say what reached the endpoint; `resumable = True` answers a run to another
follower (`resume`) as SageMaker's async endpoints do, and `FakeRun.sever()` is its first follower killed.
Every wait has a deadline: a test that forgets a run fails instead of hanging.
"""

from __future__ import annotations

import hashlib
import io
import queue
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from comfyui_sagemaker.core import cancel_tokens
from comfyui_sagemaker.core.endpoints import (
    STOPPED,
    EndpointNotFound,
    Endpoints,
    EndpointStateConflict,
    InvocationFailed,
)
from comfyui_sagemaker.core.store import DIGEST_RE, blob_key
from comfyui_sagemaker.core.templates import now

OUTPUT_NODES = {"SaveImage": "output", "PreviewImage": "temp", "SageMakerTemplateOutput": "output"}
WAIT_NODE, FAIL_NODE = "SMTestWait", "SMTestFail"
MAX_ID = 128  # the worker's limit on execution ids (worker/cancels.py)
DEADLINE = 120.0  # s a test has to end a manual run, or a held one to be released
FINAL = ("execution_success", "execution_error", "execution_interrupted")


def png(seed: str) -> bytes:
    """A small real PNG whose colour (so whose bytes) depends on `seed`."""
    from PIL import Image

    color = tuple(hashlib.sha256(seed.encode()).digest()[:3])
    buf = io.BytesIO()
    Image.new("RGB", (2, 2), color).save(buf, format="PNG")
    return buf.getvalue()


def failed(execution_id: object, code: str, message: str, **extra) -> dict:
    """A result the worker answers without running the prompt (what LocalEndpoints.invoke returns for it)."""
    return {"execution_id": execution_id, "status": "failed", "outputs": {},
            "error": {"code": code, "message": message, **extra}}


class _Died(Exception):
    """The worker stopped answering this run."""


class FakeRun:
    """One invocation while the fake endpoint has it. Its prompt is played in a thread of its own (the
    worker's ComfyUI); each follower (the invoker, a resumer) gets its events in order in its own thread, and
    an event is sent on only once every follower has taken it in (the services saw it: tests need no sleep)."""

    def __init__(self, fake: FakeEndpoints, endpoint: str, body: dict):
        self.fake = fake
        self.endpoint = endpoint
        self.execution_id: str = body.get("execution_id") or ""
        self.prompt: dict = body["prompt"]
        self.inputs: dict = dict(body.get("inputs") or {})
        self.digest: str | None = body.get(cancel_tokens.DIGEST_FIELD)
        self.prompt_id = uuid.uuid4().hex  # the worker's ComfyUI's own prompt id
        self.state = "queued"  # -> running -> ending -> ended
        self.cancelled: str | None = None  # "queued" or "running": a cancel with its token reached it then
        self.result: dict | None = None  # None once ended: the worker died
        self.outputs: dict = {}
        self.events: list[dict] = []  # every event sent to its followers, in order
        self.executed: list[str] = []
        self.node: str | None = None  # the node running now
        self.started = threading.Event()  # running (it has a ComfyUI)
        self.ended = threading.Event()
        self.dying: str | None = None  # why the worker stopped answering it
        self._commands: queue.Queue = queue.Queue()
        self._followers: list[queue.Queue] = []
        self._lock = threading.RLock()
        self._t0 = time.monotonic()
        self._t_start = self._t0

    # what tests call

    def release(self) -> None:
        """Let a run held by an SMTestWait node go on."""
        self._commands.put(("release",))

    def emit(self, kind: str, data: dict | None = None) -> None:
        """A ComfyUI event of this prompt (its prompt id added), taken in by the followers before this returns."""
        self._do("emit", kind, data or {})

    def progress(self, node: str, value: int, maximum: int) -> None:
        self.emit("progress", {"node": node, "value": value, "max": maximum})

    def executed_node(self, node: str, files: dict[str, bytes] | None = None, kind: str = "output") -> dict:
        """`node` ran and saved `files` ({name: bytes}; by default one PNG): they go to the store by content and
        an `executed` event carries them. Returns the node's ui output."""
        return self._do("executed", node, files, kind)

    def succeed(self, outputs: dict | None = None) -> dict:
        """execution_success, and a succeeded result with `outputs` (by default the executed nodes')."""
        return self._do("succeed", outputs)

    def fail(self, node_id: str, message: str, node_type: str = "SMTestFail",
             exception_type: str = "RuntimeError") -> dict:
        """The prompt fails in a node: execution_error, and the result worker/server.py answers for it."""
        return self._do("fail", node_id, message, node_type, exception_type)

    def interrupt(self) -> dict:
        """ComfyUI interrupted the prompt (as a cancel does): execution_interrupted, failed `interrupted`."""
        return self._do("interrupt")

    def answer(self, result: dict) -> dict:
        """End with this result (e.g. the worker's timeout, comfyui_died or bad_output answers)."""
        return self._do("answer", result)

    def die(self) -> None:
        """The worker stops answering this run: its followers get InvocationFailed."""
        self.dying = "the worker stopped answering"
        self._commands.put(("wake",))
        assert self.ended.wait(DEADLINE), f"run {self.execution_id} did not die"

    def sever(self) -> None:
        """The invoker's process was killed: it takes in nothing more, ever (until the fake is closed). The run
        goes on at the endpoint, and another follower can take it up (FakeEndpoints.resume)."""
        with self._lock:
            if self._followers:
                first, self._followers = self._followers[0], self._followers[1:]
                self._drain(first)
                first.put(("severed",))

    def wait_started(self, timeout: float = DEADLINE) -> FakeRun:
        assert self.started.wait(timeout), f"run {self.execution_id} never started (still {self.state})"
        return self

    def wait_ended(self, timeout: float = DEADLINE) -> dict | None:
        assert self.ended.wait(timeout), f"run {self.execution_id} never ended (still {self.state})"
        return self.result

    # followers

    def follow(self) -> queue.Queue:
        inbox: queue.Queue = queue.Queue()
        with self._lock:
            for event in self.events:  # a follower taking the run up is told what it missed
                inbox.put(("event", event, None))
            if self.ended.is_set():
                inbox.put(("result", self.result) if self.result is not None else ("died",))
            else:
                self._followers.append(inbox)
        return inbox

    def unfollow(self, inbox: queue.Queue) -> None:
        """A follower stopped listening (its invocation raised): nothing waits for it any more."""
        with self._lock:
            if inbox in self._followers:
                self._followers.remove(inbox)
            self._drain(inbox)

    @staticmethod
    def _drain(inbox: queue.Queue) -> None:
        while True:
            try:
                item = inbox.get_nowait()
            except queue.Empty:
                return
            if item[0] == "event" and item[2] is not None:
                item[2]()

    def _send(self, event: dict) -> None:
        done = threading.Event()

        def taken_in() -> None:
            with self._lock:
                pending[0] -= 1
                if pending[0] == 0:
                    done.set()

        with self._lock:  # a follower leaving (unfollow, sever) drains its inbox under this lock: none is missed
            self.events.append(event)
            pending = [len(self._followers)]
            if not self._followers:
                return
            for inbox in self._followers:
                inbox.put(("event", event, taken_in))
        if not done.wait(DEADLINE):
            raise AssertionError(f"run {self.execution_id}: a follower never took in {event['type']}")

    def _finish(self, result: dict | None) -> None:
        with self._lock:
            self.result = result
            self.state = "ended"
            inboxes, self._followers = self._followers, []
            self.ended.set()
        for inbox in inboxes:
            inbox.put(("result", result) if result is not None else ("died",))

    # the test's word, carried out by the run's own thread

    def _do(self, *command) -> object:
        assert self.fake.manual, "FakeRun's commands drive manual runs (fake.manual = True)"
        reply: queue.Queue = queue.Queue()
        self._commands.put((*command, reply))
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            try:
                outcome = reply.get(timeout=0.05)
            except queue.Empty:
                if self.ended.is_set() and reply.empty():
                    raise AssertionError(f"run {self.execution_id} ended before it could {command[0]}") from None
                continue
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        raise AssertionError(f"run {self.execution_id} did not {command[0]} within {DEADLINE:.0f} s")


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
        self.manual = False  # runs wait for the test's word instead of playing their prompt
        self.resumable = False  # runs say how to follow them (sagemaker.resumable) and `resume` answers them
        self.invocations: list[dict] = []  # every body invoked, in order
        self.cancels: list[dict] = []  # {endpoint, execution_id, outcome: running|queued|refused|unknown}
        self._endpoints: dict[str, dict] = {}
        self._all: list[FakeRun] = []
        self._early: dict[str, str] = {}  # execution id -> digest of a cancel that came before its run
        self._logs: dict[str, list[str]] = {}
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
                                          "created_at", "updated_at", "phases", "activity", "comfyuis")}

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

    def deploy(self, manifest: dict) -> dict:
        name, version = manifest["name"], manifest["version"]
        with self._lock:
            old = self._endpoints.get(self._key(name))
            if old and old["version"] == version and old["state"] in ("Creating", "InService"):
                return self.describe(old)
            if old:
                self._end_runs(name, "the worker was replaced by a deploy")
            state = {"name": name, "kind": self.kind, "state": "Updating" if old else "Creating", "environment": name,
                     "version": version, "url": None, "reason": None, "phases": [], "activity": None,
                     "comfyuis": [], "created_at": (old or {}).get("created_at") or now(), "updated_at": now(),
                     "starts": (old or {}).get("starts", 0) + 1}
            self._endpoints[self._key(name)] = state
            self._log(name, f"deploying {name} v{version}")
            view = self.describe(state)
            self._changed.notify_all()
        self.on_change(view)
        self._starting(name, state["starts"])
        return view

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

    def stop(self, name: str) -> dict:
        with self._lock:
            state = self._state(name)
            if state["state"] in (STOPPED, "Deleting"):
                raise EndpointStateConflict(f"endpoint {state['name']} is {state['state'].lower()} already")
            self._end_runs(name, "the endpoint was stopped")
            self._log(name, "stopped")
        return self._set(name, state=STOPPED, reason=None, url=None, activity=None, comfyuis=[])

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
        run = FakeRun(self, endpoint["name"], body)
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
        self.get(name)
        with self._lock:
            found = [r for r in self._all if r.execution_id == execution_id]
        if not found or resume.get("execution_id") != execution_id:
            raise InvocationFailed(f"the run {execution_id} cannot be followed: where its result lands is unknown")
        run = found[-1]
        return self._relay(run, run.follow(), on_event)

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
                    run.cancelled = run.state
                    run._commands.put(("interrupt",))
                self._changed.notify_all()
            self.cancels.append({"endpoint": name, "execution_id": execution_id, "outcome": outcome})
            self._log(name, f"cancel {execution_id}: {outcome}")

    # what only tests call

    def ready(self, name: str) -> dict:
        """A held start (hold_starts) ends: InService."""
        self._log(name, "worker ready in 0.0 s (ComfyUI 0 first; 1 in all)")
        return self._set(name, state="InService", reason=None, url=f"http://fake.invalid/{self._key(name)}",
                         comfyuis=[{"index": 0, "state": "ready"}])

    def fail(self, name: str, reason: str) -> dict:
        """The endpoint failed (its worker could not start, or died): Failed with `reason`."""
        with self._lock:
            self._end_runs(name, reason)
        return self._set(name, state="Failed", reason=reason)

    def kill(self, name: str) -> dict:
        """The worker dies: its runs' invocations fail, the endpoint is Failed (as LocalEndpoints' watcher says)."""
        self._log(name, "killed")
        return self.fail(name, "worker exited; last log lines: killed")

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
                run.dying = "the fake endpoints were closed"
                run._commands.put(("wake",))
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
                if state is None or state["starts"] != starts or state["state"] not in ("Creating", "Updating"):
                    return  # stopped, deleted or deployed again meanwhile
            self.ready(name)

        threading.Thread(target=become_ready, daemon=True, name=f"fake-start-{name}").start()

    def _end_runs(self, name: str, why: str) -> None:
        """The worker is gone (called under the lock): its runs die, queued ones too."""
        for run in self._live(name):
            run.dying = why
            run._commands.put(("wake",))
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
            if self.resumable:
                run._send({"type": "sagemaker.resumable", "data": {"resume": {"execution_id": run.execution_id}}})
            if not self._acquire(run):
                result = self._result(run, "failed", {"code": "cancelled", "message": "cancelled"})
            else:
                try:
                    result = self._manual(run) if self.manual else self._auto(run)
                finally:
                    with self._changed:
                        run.state = "ending"
                        self._changed.notify_all()
            self._log(run.endpoint, f"run {run.execution_id} ended: {result.get('status')}")
            run._finish(result)
        except _Died:
            self._log(run.endpoint, f"run {run.execution_id} lost: {run.dying}")
            run._finish(None)
        except BaseException:
            run._finish(None)
            raise
        finally:
            with self._changed:
                self._changed.notify_all()

    def _acquire(self, run: FakeRun) -> bool:
        """A ComfyUI for the run, in arrival order; False if it was cancelled while queued; _Died if the worker
        went away meanwhile."""
        with self._changed:
            while True:
                if run.dying:
                    raise _Died()
                if run.cancelled:
                    return False
                live = self._live(run.endpoint)
                running = [r for r in live if r.state in ("running", "ending")]
                queued = [r for r in live if r.state == "queued" and not r.cancelled and not r.dying]
                if len(running) < self.slots and queued and queued[0] is run:
                    run.state, run._t_start = "running", time.monotonic()
                    run.started.set()
                    self._changed.notify_all()
                    return True
                self._changed.wait(0.05)

    @staticmethod
    def _take(run: FakeRun, timeout: float | None = None) -> tuple | None:
        """The next command (None if none came within `timeout`); raises _Died once the run is dying."""
        try:
            command = run._commands.get(timeout=timeout) if timeout else run._commands.get_nowait()
        except queue.Empty:
            command = None
        if run.dying:
            raise _Died()
        return None if command is not None and command[0] == "wake" else command

    def _result(self, run: FakeRun, status: str, error: dict | None = None) -> dict:
        body = {"execution_id": run.execution_id, "status": status,
                "outputs": run.outputs if status == "succeeded" else {},
                "timings": {"queued_ms": round((run._t_start - run._t0) * 1000, 1),
                            "run_ms": round((time.monotonic() - run._t_start) * 1000, 1)}}
        if run.started.is_set():
            body["comfyui"] = 0
        if error:
            body["error"] = error
        return body

    @staticmethod
    def _event(run: FakeRun, kind: str, data: dict) -> None:
        run._send({"type": kind, "data": {**data, "prompt_id": run.prompt_id}})

    def _store_files(self, run: FakeRun, node: str, files: dict[str, bytes] | None, kind: str) -> dict:
        """Each file to the store by content, as worker/outputs.py's store_file: the item gains sha256 and size."""
        if files is None:
            files = {f"{self._prefix(run, node)}_{len(run.outputs) + 1:05d}_.png": png(f"{run.execution_id}/{node}")}
        items = []
        for filename, data in files.items():
            digest = hashlib.sha256(data).hexdigest()
            if self.store is not None and not self.store.exists(blob_key(digest)):
                self.store.put(blob_key(digest), data)
            items.append({"filename": filename, "subfolder": "", "type": kind, "sha256": digest, "size": len(data)})
        return {"images": items}

    @staticmethod
    def _prefix(run: FakeRun, node: str) -> str:
        inputs = (run.prompt.get(node) or {}).get("inputs") or {}
        prefix = inputs.get("filename_prefix") or inputs.get("name")
        return Path(prefix).name if isinstance(prefix, str) and prefix else "ComfyUI"

    def _executed(self, run: FakeRun, node: str, files: dict[str, bytes] | None = None, kind: str = "output") -> dict:
        ui = self._store_files(run, node, files, kind)
        run.outputs[node] = ui
        run.executed.append(node)
        self._event(run, "executed", {"node": node, "display_node": node, "output": ui})
        return ui

    def _failed_in(self, run: FakeRun, node: str, node_type: str, message: str, exception_type: str) -> dict:
        self._event(run, "execution_error", {
            "node_id": node, "node_type": node_type, "executed": list(run.executed), "exception_message": message,
            "exception_type": exception_type, "traceback": [f'  raise {exception_type}("{message}")'],
            "current_inputs": {}, "current_outputs": {}, "timestamp": int(time.time() * 1000)})
        return self._result(run, "failed", {"code": "node_error", "node_id": node, "node_type": node_type,
                                            "message": message.strip(), "exception_type": exception_type})

    def _interrupted(self, run: FakeRun) -> dict:
        node = run.node
        node_type = (run.prompt.get(node) or {}).get("class_type") if node else None
        self._event(run, "execution_interrupted", {"node_id": node, "node_type": node_type,
                                                   "executed": list(run.executed),
                                                   "timestamp": int(time.time() * 1000)})
        return self._result(run, "failed", {"code": "interrupted", "node_id": node, "node_type": node_type,
                                            "message": "interrupted"})

    @staticmethod
    def _order(prompt: dict) -> list[str]:
        """The nodes ComfyUI executes (those the output nodes need), dependencies first."""
        order: list[str] = []

        def visit(node: str, path: tuple[str, ...]) -> None:
            if node in order or node in path or not isinstance(prompt.get(node), dict):
                return
            for value in (prompt[node].get("inputs") or {}).values():
                if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                    visit(value[0], (*path, node))
            order.append(node)

        for node in sorted(n for n, v in prompt.items() if isinstance(v, dict) and v.get("class_type") in OUTPUT_NODES):
            visit(node, ())
        return order

    def _auto(self, run: FakeRun) -> dict:
        """The prompt played as the worker's ComfyUI plays it."""
        order = self._order(run.prompt)
        if not order:
            return self._result(run, "failed", {"code": "prompt_invalid", "message": "Prompt has no outputs",
                                                "details": {"error": {"type": "prompt_no_outputs",
                                                                      "message": "Prompt has no outputs"},
                                                            "node_errors": {}}})
        stamp = int(time.time() * 1000)
        self._event(run, "execution_start", {"timestamp": stamp})
        self._event(run, "execution_cached", {"nodes": [], "timestamp": stamp})
        for node in order:
            command = self._take(run)
            if run.cancelled or (command is not None and command[0] == "interrupt"):
                return self._interrupted(run)
            spec = run.prompt[node]
            run.node = node
            self._event(run, "executing", {"node": node, "display_node": node})
            self._event(run, "progress_state", {"nodes": {node: {"value": 0, "max": 1, "state": "running",
                                                                 "node_id": node, "prompt_id": run.prompt_id,
                                                                 "display_node_id": node, "parent_node_id": None,
                                                                 "real_node_id": node}}})
            kind, inputs = spec.get("class_type"), spec.get("inputs") or {}
            if kind == WAIT_NODE and not self._held(run, str(inputs.get("signal") or ""),
                                                    float(inputs.get("timeout") or 60)):
                return self._interrupted(run)
            if kind == FAIL_NODE:
                return self._failed_in(run, node, kind, str(inputs.get("message", "boom")), "RuntimeError")
            if kind in OUTPUT_NODES:
                self._executed(run, node, kind=OUTPUT_NODES[kind])
            else:
                run.executed.append(node)
        run.node = None
        self._event(run, "execution_success", {"timestamp": int(time.time() * 1000)})
        return self._result(run, "succeeded")

    def _held(self, run: FakeRun, signal: str, timeout: float) -> bool:
        """SMTestWait: until its signal file exists, release(), or `timeout` s; False if it was interrupted."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (signal and Path(signal).exists()):
            command = self._take(run, 0.01)
            if run.cancelled or (command is not None and command[0] == "interrupt"):
                return False
            if command is not None and command[0] == "release":
                break
        return True

    def _manual(self, run: FakeRun) -> dict:
        """The run waits for the test's word (FakeRun's methods), each carried out here, in order."""
        deadline = time.monotonic() + DEADLINE
        while True:
            if time.monotonic() > deadline:
                run.dying = f"the test never ended it within {DEADLINE:.0f} s"
                raise _Died()
            command = self._take(run, 0.05)
            if run.cancelled or (command is not None and command[0] == "interrupt" and len(command) == 1):
                return self._interrupted(run)
            if command is None or command[0] == "release":
                continue
            kind, args, reply = command[0], command[1:-1], command[-1]
            try:
                if kind == "emit":
                    self._event(run, args[0], args[1])
                    reply.put(None)
                    continue
                if kind == "executed":
                    run.node = args[0]
                    reply.put(self._executed(run, *args))
                    continue
                if kind == "succeed":
                    if args[0] is not None:
                        run.outputs = args[0]
                    run.node = None
                    self._event(run, "execution_success", {"timestamp": int(time.time() * 1000)})
                    result = self._result(run, "succeeded")
                elif kind == "fail":
                    result = self._failed_in(run, args[0], args[2], args[1], args[3])
                elif kind == "interrupt":
                    result = self._interrupted(run)
                else:  # answer
                    result = {"execution_id": run.execution_id, **args[0]}
            except Exception as err:  # the test's mistake reaches the test
                reply.put(err)
                continue
            reply.put(result)
            return result
