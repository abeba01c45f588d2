"""Jobs: long background tasks (environment publish, model download) with progress and cancel.

A job runs in its own thread, never on ComfyUI's event loop. It reports
progress through `Job.update(...)`; listeners (the websocket relay) hear at
most `max_rate` updates a second, plus every change of state. `cancel()` sets
an event the task checks between chunks; the task then raises JobCancelled.
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


class JobCancelled(Exception):
    """Raised inside a task when its job was cancelled."""


class JobNotFound(NotFound):
    """No job has this id (jobs live in memory: a restart forgets them)."""

    code = "not_found"


@dataclass
class Job:
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
    _notify: Callable[[Job, bool], None] | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        return {
            "id": self.id, "kind": self.kind, "target": self.target, "state": self.state, "phase": self.phase,
            "bytes_done": self.bytes_done, "bytes_total": self.bytes_total, "files_done": self.files_done,
            "files_total": self.files_total, "current": self.current, "error": self.error,
            "result": self.result, "started_at": self.started_at, "finished_at": self.finished_at,
        }

    def update(self, **fields: Any) -> None:
        """Set progress fields; raises JobCancelled if the job was cancelled meanwhile."""
        for k, v in fields.items():
            setattr(self, k, v)
        if self._notify:
            self._notify(self, False)
        self.check_cancelled()

    def add_bytes(self, n: int) -> None:
        self.update(bytes_done=self.bytes_done + n)

    def check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise JobCancelled()


class JobManager:
    def __init__(self, on_event: Callable[[dict], None] | None = None, max_rate: float = 4.0):
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._on_event = on_event
        self._min_interval = 1.0 / max_rate
        self._last_sent: dict[str, float] = {}

    def _notify(self, job: Job, force: bool) -> None:
        if self._on_event is None:
            return
        now = time.monotonic()
        if not force and now - self._last_sent.get(job.id, 0.0) < self._min_interval:
            return
        self._last_sent[job.id] = now
        try:
            self._on_event(job.to_json())
        except Exception:  # a listener must never break the job
            pass

    def start(self, kind: str, target: str, task: Callable[[Job], Any]) -> Job:
        """Run `task(job)` in a thread; its return value becomes `job.result`."""
        job = Job(id=uuid.uuid4().hex, kind=kind, target=target, _notify=self._notify)
        with self._lock:
            self._jobs[job.id] = job

        def run() -> None:
            try:
                job.result = task(job)
                job.state = "succeeded"
                job.phase = "done"
            except JobCancelled:
                job.state, job.phase = "cancelled", "cancelled"
            except SageMakerError as err:
                job.state = "failed"
                job.error = {"code": err.code, "message": err.message}
            except Exception as err:  # an unexpected failure still ends the job, with a message
                job.state = "failed"
                job.error = {"code": "internal_error", "message": f"{type(err).__name__}: {err}"}
            job.finished_at = time.time()
            job.current = None
            self._notify(job, True)

        self._notify(job, True)
        threading.Thread(target=run, name=f"sagemaker-job-{kind}-{job.id[:8]}", daemon=True).start()
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"job {job_id!r} does not exist (jobs are forgotten when ComfyUI restarts)")
        return job

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.state != "running":
            raise Conflict(f"job {job_id} is {job.state}; only a running job can be cancelled")
        job.cancel_event.set()
        return job

    def running(self, kind: str, target: str) -> Job | None:
        with self._lock:
            return next((j for j in self._jobs.values()
                         if j.kind == kind and j.target == target and j.state == "running"), None)

    def wait(self, job_id: str, timeout: float) -> Job:
        """Block until the job ends (tests and the CLI)."""
        deadline = time.monotonic() + timeout
        job = self.get(job_id)
        while job.state == "running" and time.monotonic() < deadline:
            time.sleep(0.02)
        return job
