"""What a v2 event stream (`GET /jobs/{id}/events`, server-sent events) sends for one job.

On connect: a `status` event, the latest `progress` and `preview` if any; then each change; `output` events
as outputs are known; at the end the outputs not sent yet and the terminal `status`, after which the
stream ends. Live push only, as the protocol says (no ids, no replay): a client that reconnects gets a
fresh snapshot, and `GET /jobs/{id}` stays the authority.

Where changes come from: a run this process follows pushes them (core/v2/job_view.py LiveJobs, the caller
waits on its event); a run another process follows is polled from the store: its record by conditional
GET (cheap when unchanged) and, while it runs, its worker's coarse progress (`async/progress/<id>.json`).
Progress events are throttled to two a second; each is a complete snapshot.
"""

from __future__ import annotations

import json
import time

from ..errors import ExecutionCorrupt
from ..execution_records import parse_record
from ..records import ExecutionRecord
from ..store import KeyNotFound
from ..unreadable import Unreadable, report
from .job_view import PROGRESS_KEY, TERMINAL, Mount, job_json, stored_progress
from .jobs_v2 import JobsV2

PROGRESS_EVERY_S = 0.5


class JobEvents:
    def __init__(self, jobs: JobsV2, environment: str, job_id: str, mount: Mount, user: str | None = None,
                 clock=time.monotonic):
        self.jobs = jobs
        self.environment = environment
        self.job_id = job_id
        self.mount = mount
        self.user = user
        self.clock = clock
        self.status: str | None = None
        self.progress: dict | None = None
        self.progress_at = 0.0
        self.preview: str | None = None
        self.outputs: set[str] = set()
        self._record: ExecutionRecord | None = None
        self._etag: str | None = None
        self._progress_etag: str | None = None
        self._stored: tuple[dict | None, dict | None] = (None, None)
        self.ended = False
        self.pending = False

    @property
    def live(self) -> bool:
        """Whether this process follows the run (changes are pushed, no need to poll)."""
        return self.jobs.executions.live(self.job_id)

    def _read(self) -> tuple[ExecutionRecord, dict | None, dict | None, list | None]:
        """(record, progress, preview, outputs so far) now."""
        executions = self.jobs.executions
        if executions.live(self.job_id):
            record = self.jobs.record(self.environment, self.job_id, self.user)
            live = self.jobs.live.get(self.job_id)
            if live is not None:
                return record, live.tracker.snapshot(), live.preview, live.outputs
            return record, None, None, None
        if self._record is None:
            # Its ETag before the record: a write between the two is seen at the next look. (The ETag read after
            # the record could be a later write's: every look then matched it and the stream never saw the end.)
            read = executions.records.read(self.job_id)
            self._etag = read[1] if read else None
            self._record = self.jobs.record(self.environment, self.job_id, self.user)  # JobNotFound -> 404
        else:  # a conditional GET: nothing comes back unless the record changed
            key = executions.records.key(self.job_id)
            try:
                got = self.jobs.store.get_if_changed(key, self._etag)
            except KeyNotFound:
                got = None
            if got is not None:
                try:
                    self._record = parse_record(got.data, key, self.job_id)
                except Unreadable as err:  # rewritten unreadable: the stream says so and ends (the v2 face's error)
                    report(err.key, err.reason)
                    raise ExecutionCorrupt(f"job {self.job_id} cannot be read from the store ({err.reason})",
                                           err.key, err.reason) from None
                self._etag = got.etag
        if self._etag is None:
            read = executions.records.read(self.job_id)
            self._etag = read[1] if read else None
        record = self._record
        if record["state"] == "running":
            try:
                changed = self.jobs.store.get_if_changed(PROGRESS_KEY.format(id=self.job_id), self._progress_etag)
            except KeyNotFound:
                changed = None
            except Exception:
                changed = None
            if changed is not None:
                self._progress_etag = changed.etag
                self._stored = stored_progress(self.jobs.store, record)
            return record, self._stored[0], self._stored[1], None
        return record, None, None, None

    def poll(self) -> list[tuple[str, dict]]:
        """The events to send now (blocking: it may read the store). Sets `ended` after the terminal status."""
        record, progress, preview, outputs = self._read()
        job = job_json(record, self.mount, self.jobs.retention_days(), progress, outputs)
        frames: list[tuple[str, dict]] = []
        terminal = job["status"] in TERMINAL
        if job["status"] != self.status and not terminal:
            self.status = job["status"]
            frames.append(("status", {"status": job["status"], "queue_position": None}))
        now = self.clock()
        due = terminal or self.progress is None or now - self.progress_at >= PROGRESS_EVERY_S
        progress = job["progress"]
        changed = bool(progress) and progress != self.progress
        self.pending = changed and not due  # held back by the throttle: look again soon
        if progress and changed and due:
            self.progress, self.progress_at = progress, now
            frames.append(("progress", progress))
        if preview and preview["data_base64"][-64:] != self.preview and not terminal:
            self.preview = preview["data_base64"][-64:]
            frames.append(("preview", preview))
        for output in job["outputs"]:
            if output["id"] not in self.outputs:
                self.outputs.add(output["id"])
                frames.append(("output", output))
        if terminal:
            frames.append(("status", {"status": job["status"], "queue_position": None}))
            self.ended = True
        return frames


def frame(event: str, data: dict) -> bytes:
    """One server-sent event (no id: the stream is not a replayable log)."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


KEEPALIVE = b": keepalive\n\n"
