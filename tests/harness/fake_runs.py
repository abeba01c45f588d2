"""One run at a fake endpoint (tests/harness/fake_endpoints.py), as the worker and its ComfyUI play it.

The worker's side (worker/server.py, worker/comfy.py, worker/outputs.py): the prompt played in ComfyUI's order
of events (execution_start, execution_cached, executing and progress_state per node the output nodes need,
executed for each output node with its files put in the store by content, execution_success), and the result
the worker answers, with its error codes (node_error, interrupted, cancelled, prompt_invalid). The test pack's
nodes behave as in a real ComfyUI: SMTestWait holds the run until its signal file exists (or `release()`,
which stands for that file: a run released before it reaches its SMTestWait does not stop there),
SMTestFail fails it in that node with its message. A manual run instead waits for the test's word: emit,
progress, executed_node, succeed, fail, interrupt, answer, die.

Its followers' side: each follower (the invoker, one taking the run over) gets the events in order in its own
thread; an event goes on only once every follower has taken it in, so the services have seen it when the run
goes on. `sever()` is the invoker's process killed: it takes in nothing more.
"""

from __future__ import annotations

import hashlib
import io
import queue
import threading
import time
import uuid
from pathlib import Path

from comfyui_sagemaker.core import cancel_tokens
from comfyui_sagemaker.core.store import blob_key

OUTPUT_NODES = {"SaveImage": "output", "PreviewImage": "temp", "SageMakerTemplateOutput": "output"}
WAIT_NODE, FAIL_NODE = "SMTestWait", "SMTestFail"
DEADLINE = 120.0  # s a test has to end a manual run, a follower to take in an event, a wait to be met


def png(seed: str) -> bytes:
    """A small real PNG whose colour (so whose bytes) depends on `seed`."""
    from PIL import Image

    color = tuple(hashlib.sha256(seed.encode()).digest()[:3])
    buf = io.BytesIO()
    Image.new("RGB", (2, 2), color).save(buf, format="PNG")
    return buf.getvalue()


class Died(Exception):
    """The worker stopped answering this run."""


class FakeRun:
    """One invocation while the fake endpoint has it. Its prompt is played in a thread of its own (the
    worker's ComfyUI); each follower (the invoker, a resumer) gets its events in order in its own thread, and
    an event is sent on only once every follower has taken it in (the services saw it: tests need no sleep)."""

    def __init__(self, endpoint: str, body: dict, store=None, manual: bool = False):
        self.endpoint = endpoint
        self.store = store  # where its output files go
        self.manual = manual  # waits for the test's word instead of playing its prompt
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
        self.released = threading.Event()  # release(): its SMTestWait nodes' signal exists, now and from now on
        self.ended = threading.Event()
        self.dying: str | None = None  # why the worker stopped answering it
        self._commands: queue.Queue = queue.Queue()
        self._followers: list[queue.Queue] = []
        self._lock = threading.RLock()
        self._t0 = time.monotonic()
        self._t_start = self._t0

    # what tests call

    def release(self) -> None:
        """Let a run held by an SMTestWait node go on; one released before it reaches that node (a test releases
        it once it has started, while it still plays the nodes before) goes through it: a flag, as the node's
        signal file is, not a command the nodes before could take and drop."""
        self.released.set()

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
        self.lose("the worker stopped answering")
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

    # what its endpoint does to it

    def begin(self) -> None:
        """It has a ComfyUI now."""
        self.state, self._t_start = "running", time.monotonic()
        self.started.set()

    def cancelled_by_token(self) -> None:
        """A cancel with its token reached it: a queued run never runs, a running one is interrupted."""
        self.cancelled = self.state
        self._commands.put(("interrupt",))

    def lose(self, why: str) -> None:
        """The worker went away (killed, stopped, deleted, replaced): its followers get InvocationFailed."""
        self.dying = why
        self._commands.put(("wake",))

    # followers

    def follow(self) -> queue.Queue:
        """A new follower's inbox: what it missed, then each event as it comes, then the end."""
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

    def send(self, event: dict, keep: bool = True) -> None:
        """An event to every follower, in order; returns once each has taken it in. `keep`: one of the run's own
        (in `events`, told to a follower that takes it up later), not the endpoint's word to its invoker."""
        done = threading.Event()

        def taken_in() -> None:
            with self._lock:
                pending[0] -= 1
                if pending[0] == 0:
                    done.set()

        with self._lock:  # a follower leaving (unfollow, sever) drains its inbox under this lock: none is missed
            if keep:
                self.events.append(event)
            pending = [len(self._followers)]
            if not self._followers:
                return
            for inbox in self._followers:
                inbox.put(("event", event, taken_in))
        if not done.wait(DEADLINE):
            raise AssertionError(f"run {self.execution_id}: a follower never took in {event['type']}")

    def finish(self, result: dict | None) -> None:
        """Its end: its result to every follower (None: the worker died, they get InvocationFailed)."""
        with self._lock:
            self.result = result
            self.state = "ended"
            inboxes, self._followers = self._followers, []
            self.ended.set()
        for inbox in inboxes:
            inbox.put(("result", result) if result is not None else ("died",))

    # the test's word, carried out by the run's own thread (the worker's side, below)

    def _do(self, *command) -> object:
        assert self.manual, "FakeRun's commands drive manual runs (fake.manual = True)"
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

    # the worker's side

    def play(self) -> dict:
        """Once it has a ComfyUI: its prompt played (or the test's word carried out); its result. Died if the
        worker went away meanwhile."""
        return self._manual() if self.manual else self._auto()

    def _take(self, timeout: float | None = None) -> tuple | None:
        """The next command (None if none came within `timeout`); raises Died once the run is dying."""
        try:
            command = self._commands.get(timeout=timeout) if timeout else self._commands.get_nowait()
        except queue.Empty:
            command = None
        if self.dying:
            raise Died()
        return None if command is not None and command[0] == "wake" else command

    def result_body(self, status: str, error: dict | None = None) -> dict:
        """What worker/server.py answers for it (Worker.result)."""
        body = {"execution_id": self.execution_id, "status": status,
                "outputs": self.outputs if status == "succeeded" else {},
                "timings": {"queued_ms": round((self._t_start - self._t0) * 1000, 1),
                            "run_ms": round((time.monotonic() - self._t_start) * 1000, 1)}}
        if self.started.is_set():
            body["comfyui"] = 0
        if error:
            body["error"] = error
        return body

    def _event(self, kind: str, data: dict) -> None:
        self.send({"type": kind, "data": {**data, "prompt_id": self.prompt_id}})

    def _store_files(self, node: str, files: dict[str, bytes] | None, kind: str) -> dict:
        """Each file to the store by content, as worker/outputs.py's store_file: the item gains sha256 and size."""
        if files is None:
            files = {f"{self._prefix(node)}_{len(self.outputs) + 1:05d}_.png": png(f"{self.execution_id}/{node}")}
        items = []
        for filename, data in files.items():
            digest = hashlib.sha256(data).hexdigest()
            if self.store is not None and not self.store.exists(blob_key(digest)):
                self.store.put(blob_key(digest), data)
            items.append({"filename": filename, "subfolder": "", "type": kind, "sha256": digest, "size": len(data)})
        return {"images": items}

    def _prefix(self, node: str) -> str:
        inputs = (self.prompt.get(node) or {}).get("inputs") or {}
        prefix = inputs.get("filename_prefix") or inputs.get("name")
        return Path(prefix).name if isinstance(prefix, str) and prefix else "ComfyUI"

    def _executed(self, node: str, files: dict[str, bytes] | None = None, kind: str = "output") -> dict:
        ui = self._store_files(node, files, kind)
        self.outputs[node] = ui
        self.executed.append(node)
        self._event("executed", {"node": node, "display_node": node, "output": ui})
        return ui

    def _failed_in(self, node: str, node_type: str, message: str, exception_type: str) -> dict:
        self._event("execution_error", {
            "node_id": node, "node_type": node_type, "executed": list(self.executed), "exception_message": message,
            "exception_type": exception_type, "traceback": [f'  raise {exception_type}("{message}")'],
            "current_inputs": {}, "current_outputs": {}, "timestamp": int(time.time() * 1000)})
        return self.result_body("failed", {"code": "node_error", "node_id": node, "node_type": node_type,
                                           "message": message.strip(), "exception_type": exception_type})

    def _interrupted(self) -> dict:
        node = self.node
        node_type = (self.prompt.get(node) or {}).get("class_type") if node else None
        self._event("execution_interrupted", {"node_id": node, "node_type": node_type,
                                              "executed": list(self.executed), "timestamp": int(time.time() * 1000)})
        return self.result_body("failed", {"code": "interrupted", "node_id": node, "node_type": node_type,
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

    def _auto(self) -> dict:
        """The prompt played as the worker's ComfyUI plays it."""
        order = self._order(self.prompt)
        if not order:
            return self.result_body("failed", {"code": "prompt_invalid", "message": "Prompt has no outputs",
                                               "details": {"error": {"type": "prompt_no_outputs",
                                                                     "message": "Prompt has no outputs"},
                                                           "node_errors": {}}})
        stamp = int(time.time() * 1000)
        self._event("execution_start", {"timestamp": stamp})
        self._event("execution_cached", {"nodes": [], "timestamp": stamp})
        for node in order:
            command = self._take()
            if self.cancelled or (command is not None and command[0] == "interrupt"):
                return self._interrupted()
            spec = self.prompt[node]
            self.node = node
            self._event("executing", {"node": node, "display_node": node})
            self._event("progress_state", {"nodes": {node: {"value": 0, "max": 1, "state": "running",
                                                            "node_id": node, "prompt_id": self.prompt_id,
                                                            "display_node_id": node, "parent_node_id": None,
                                                            "real_node_id": node}}})
            kind, inputs = spec.get("class_type"), spec.get("inputs") or {}
            if kind == WAIT_NODE and not self._held(str(inputs.get("signal") or ""),
                                                     float(inputs.get("timeout") or 60)):
                return self._interrupted()
            if kind == FAIL_NODE:
                return self._failed_in(node, kind, str(inputs.get("message", "boom")), "RuntimeError")
            if kind in OUTPUT_NODES:
                self._executed(node, kind=OUTPUT_NODES[kind])
            else:
                self.executed.append(node)
        self.node = None
        self._event("execution_success", {"timestamp": int(time.time() * 1000)})
        return self.result_body("succeeded")

    def _held(self, signal: str, timeout: float) -> bool:
        """SMTestWait: until its signal file exists, release(), or `timeout` s; False if it was interrupted."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.released.is_set() and not (signal and Path(signal).exists()):
            command = self._take(0.01)
            if self.cancelled or (command is not None and command[0] == "interrupt"):
                return False
        return True

    def _manual(self) -> dict:
        """The run waits for the test's word (FakeRun's methods), each carried out here, in order."""
        deadline = time.monotonic() + DEADLINE
        while True:
            if time.monotonic() > deadline:
                self.dying = f"the test never ended it within {DEADLINE:.0f} s"
                raise Died()
            command = self._take(0.05)
            if self.cancelled or (command is not None and command[0] == "interrupt" and len(command) == 1):
                return self._interrupted()
            if command is None:
                continue
            kind, args, reply = command[0], command[1:-1], command[-1]
            try:
                if kind == "emit":
                    self._event(args[0], args[1])
                    reply.put(None)
                    continue
                if kind == "executed":
                    self.node = args[0]
                    reply.put(self._executed(*args))
                    continue
                if kind == "succeed":
                    if args[0] is not None:
                        self.outputs = args[0]
                    self.node = None
                    self._event("execution_success", {"timestamp": int(time.time() * 1000)})
                    result = self.result_body("succeeded")
                elif kind == "fail":
                    result = self._failed_in(args[0], args[2], args[1], args[3])
                elif kind == "interrupt":
                    result = self._interrupted()
                else:  # answer
                    result = {"execution_id": self.execution_id, **args[0]}
            except Exception as err:  # the test's mistake reaches the test
                reply.put(err)
                continue
            reply.put(result)
            return result
