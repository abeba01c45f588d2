"""Tasks: long background work (environment publish, model download) with progress and cancel.

A task runs in its own thread, never on ComfyUI's event loop. It reports
progress through `Task.update(...)`; listeners (the websocket relay) hear at
most `max_rate` updates a second, plus every change of state. `cancel()` sets
an event the work checks between chunks; the work then raises TaskCancelled.
("Task", not "job": a job is a Comfy API v2 run, core/v2/jobs_v2.py.)
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import Conflict, NotFound, SageMakerError

STATES = ("running", "succeeded", "failed", "cancelled")


class TaskCancelled(Exception):
    """Raised inside a task's work when the task was cancelled."""


class TaskNotFound(NotFound):
    """No task has this id (tasks live in memory: a restart forgets them)."""

    code = "not_found"


@dataclass
class Task:
    id: str
    kind: str
    target: str
    state: str = "running"
    phase: str = "starting"
    bytes_done: int = 0
    bytes_total: int = 0
    files_done: int = 0
    files_total: int = 0
    current: str | None = None
    error: dict | None = None
    result: Any = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)
    _notify: Callable[[Task, bool], None] | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        return {
            "id": self.id, "kind": self.kind, "target": self.target, "state": self.state, "phase": self.phase,
            "bytes_done": self.bytes_done, "bytes_total": self.bytes_total, "files_done": self.files_done,
            "files_total": self.files_total, "current": self.current, "error": self.error,
            "result": self.result, "started_at": self.started_at, "finished_at": self.finished_at,
        }

    def update(self, **fields: Any) -> None:
        """Set progress fields; raises TaskCancelled if the task was cancelled meanwhile."""
        for k, v in fields.items():
            setattr(self, k, v)
        if self._notify:
            self._notify(self, False)
        self.check_cancelled()

    def add_bytes(self, n: int) -> None:
        self.update(bytes_done=self.bytes_done + n)

    def check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise TaskCancelled()


class TaskManager:
    def __init__(self, on_event: Callable[[dict], None] | None = None, max_rate: float = 4.0):
        self._tasks: dict[str, Task] = {}
        self._lock = threading.Lock()
        self._on_event = on_event
        self._min_interval = 1.0 / max_rate
        self._last_sent: dict[str, float] = {}

    def _notify(self, task: Task, force: bool) -> None:
        if self._on_event is None:
            return
        now = time.monotonic()
        if not force and now - self._last_sent.get(task.id, 0.0) < self._min_interval:
            return
        self._last_sent[task.id] = now
        try:
            self._on_event(task.to_json())
        except Exception:  # a listener must never break the task
            pass

    def start(self, kind: str, target: str, work: Callable[[Task], Any]) -> Task:
        """Run `work(task)` in a thread; its return value becomes `task.result`."""
        task = Task(id=uuid.uuid4().hex, kind=kind, target=target, _notify=self._notify)
        with self._lock:
            self._tasks[task.id] = task

        def run() -> None:
            try:
                task.result = work(task)
                task.state = "succeeded"
                task.phase = "done"
            except TaskCancelled:
                task.state, task.phase = "cancelled", "cancelled"
            except SageMakerError as err:
                task.state = "failed"
                task.error = {"code": err.code, "message": err.message}
            except Exception as err:  # an unexpected failure still ends the task, with a message
                task.state = "failed"
                task.error = {"code": "internal_error", "message": f"{type(err).__name__}: {err}"}
            task.finished_at = time.time()
            task.current = None
            self._notify(task, True)

        self._notify(task, True)
        threading.Thread(target=run, name=f"sagemaker-task-{kind}-{task.id[:8]}", daemon=True).start()
        return task

    def get(self, task_id: str) -> Task:
        with self._lock:
            task = self._tasks.get(task_id)
        if task is None:
            raise TaskNotFound(f"task {task_id!r} does not exist (tasks are forgotten when ComfyUI restarts)")
        return task

    def cancel(self, task_id: str) -> Task:
        task = self.get(task_id)
        if task.state != "running":
            raise Conflict(f"task {task_id} is {task.state}; only a running task can be cancelled")
        task.cancel_event.set()
        return task

    def running(self, kind: str, target: str) -> Task | None:
        with self._lock:
            return next((t for t in self._tasks.values()
                         if t.kind == kind and t.target == target and t.state == "running"), None)

    def wait(self, task_id: str, timeout: float) -> Task:
        """Block until the task ends (tests and the CLI)."""
        deadline = time.monotonic() + timeout
        task = self.get(task_id)
        while task.state == "running" and time.monotonic() < deadline:
            time.sleep(0.02)
        return task
