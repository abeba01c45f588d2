"""An execution as the Comfy API v2 shows it: the Job object, its outputs as assets, its progress.

Progress is computed from ComfyUI's own events (execution_cached, executing, progress, progress_state,
executed), weighted by nodes and sampler steps; each snapshot is complete, so one re-syncs a client.
Where the events come from: `LiveJobs`, fed by ExecutionService.listeners, for the runs this process
follows; for a run another process follows, the coarse progress its worker writes to the store
(`async/progress/<id>.json`, SageMaker async) or, failing that, the record alone.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from typing_extensions import NotRequired, TypedDict

from ..execution_records import FINAL
from ..records import ExecutionRecord, ExecutionSummary, Webhook
from ..store import KeyNotFound, Store
from ..worker_contract import PROGRESS_PREFIX, read_progress
from .assets import KINDS, OCTETS, output_id, output_items

STATUS = {"queued": "queued", "running": "running", "succeeded": "succeeded", "failed": "failed",
          "cancelled": "canceled"}
TERMINAL = ("succeeded", "failed", "canceled", "expired")
PROGRESS_KEY = PROGRESS_PREFIX + "{id}.json"  # the worker's coarse progress of an async run (worker/outputs.py)
PREVIEW = "sagemaker.preview"
URL_LIFETIME = timedelta(hours=1)


@dataclass(frozen=True)
class Mount:
    """Where a v2 surface is served: the request's origin and the mount prefix (…/v2/<environment>)."""

    origin: str
    prefix: str

    def path(self, path: str) -> str:
        return f"{self.prefix}/api/v2{path}"

    def url(self, path: str) -> str:
        return self.origin + self.path(path)


class ProgressTracker:
    """Folds ComfyUI's events of one run into v2 progress snapshots."""

    def __init__(self, classes: dict[str, str] | None = None, total: int | None = None):
        self.classes = classes or {}
        self.total = total or len(self.classes)
        self.done: set[str] = set()
        self.current: str | None = None
        self.step: int | None = None
        self.steps: int | None = None
        self.seen = False

    def add(self, kind: str, data: dict) -> bool:
        """Take one event; whether the snapshot changed."""
        before = self.snapshot()
        node = data.get("node")
        if kind == "execution_cached":
            self.done |= {str(n) for n in data.get("nodes") or []}
        elif kind == "executing":
            self.current, self.step, self.steps = (str(node) if node is not None else None), None, None
        elif kind == "progress":
            self.current = str(node) if node is not None else self.current
            self.step, self.steps = _int(data.get("value")), _int(data.get("max"))
        elif kind == "progress_state":
            for nid, entry in (data.get("nodes") or {}).items():
                if not isinstance(entry, dict):
                    continue
                if entry.get("state") == "finished":
                    self.done.add(str(nid))
                elif entry.get("state") == "running":
                    self.current, self.step, self.steps = str(nid), _int(entry.get("value")), _int(entry.get("max"))
        elif kind == "executed" and node is not None:
            self.done.add(str(node))
        elif kind == "execution_success":
            self.done |= set(self.classes)
            self.current, self.step, self.steps = None, None, None
        else:
            return False
        self.seen = True
        return self.snapshot() != before

    def snapshot(self) -> dict | None:
        if not self.seen:
            return None
        running = self.current is not None and self.current not in self.done
        total = max(self.total, len(self.done) + (1 if running else 0), 1)
        partial = (self.step / self.steps) if running and self.step is not None and self.steps else 0.0
        value = min(1.0, max(0.0, (len(self.done) + partial) / total))
        cls = self.classes.get(self.current or "") if running else None
        message = None
        if running and self.steps:
            message = f"{cls or 'node ' + str(self.current)} {self.step}/{self.steps}"
        return {"value": round(value, 4), "nodes_done": min(len(self.done), total), "nodes_total": total,
                "current_node": self.current if running else None, "current_node_class": cls,
                "step": self.step if running else None, "steps": self.steps if running else None, "message": message}


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass
class Live:
    """What this process knows of a run it follows, beyond its record."""

    tracker: ProgressTracker
    preview: dict | None = None
    outputs: list[tuple[str, str, dict]] = field(default_factory=list)
    seq: int = 0


class LiveJobs:
    """The runs this process follows: their progress, latest preview and outputs so far, and who waits for a
    change (SSE streams, on their own event loops). Call it as an ExecutionService listener."""

    def __init__(self):
        self._jobs: dict[str, Live] = {}
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._lock = threading.Lock()

    def track(self, execution_id: str, prompt: dict) -> None:
        classes = {str(k): str(v.get("class_type")) for k, v in prompt.items() if isinstance(v, dict)}
        with self._lock:
            self._jobs.setdefault(execution_id, Live(ProgressTracker(classes, len(classes))))

    def __call__(self, execution_id: str, kind: str, data: dict) -> None:
        with self._lock:
            live = self._jobs.get(execution_id)
            if kind == "sagemaker.execution":
                if data.get("state") in FINAL:
                    self._jobs.pop(execution_id, None)  # its record says everything from now on
            else:
                if live is None:
                    live = self._jobs[execution_id] = Live(ProgressTracker())
                if kind == PREVIEW:
                    image = data.get("image")
                    if isinstance(image, (bytes, bytearray)):
                        live.preview = {"node_id": str(data.get("node_id") or ""),
                                        "content_type": data.get("image_type") or "image/jpeg",
                                        "data_base64": base64.b64encode(image).decode()}
                elif kind == "executed" and isinstance(data.get("output"), dict):
                    live.tracker.add(kind, data)
                    for key, items in data["output"].items():
                        for item in items if isinstance(items, list) else ():
                            if isinstance(item, dict) and isinstance(item.get("sha256"), str):
                                live.outputs.append((str(data.get("node")), key, item))
                elif not live.tracker.add(kind, data):
                    return
            if live is not None:
                live.seq += 1
            waiters = list(self._waiters.get(execution_id, ()))
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    def get(self, execution_id: str) -> Live | None:
        with self._lock:
            live = self._jobs.get(execution_id)
            if live is None:
                return None
            return Live(live.tracker, live.preview, list(live.outputs), live.seq)

    def subscribe(self, execution_id: str) -> asyncio.Event:
        event = asyncio.Event()
        with self._lock:
            self._waiters.setdefault(execution_id, set()).add((asyncio.get_running_loop(), event))
        return event

    def unsubscribe(self, execution_id: str, event: asyncio.Event) -> None:
        with self._lock:
            waiters = {w for w in self._waiters.get(execution_id, set()) if w[1] is not event}
            if waiters:
                self._waiters[execution_id] = waiters
            else:
                self._waiters.pop(execution_id, None)

    def waiting(self) -> int:
        with self._lock:
            return sum(len(w) for w in self._waiters.values())


def stored_progress(store: Store, record: ExecutionRecord) -> tuple[dict | None, dict | None]:
    """(progress, latest preview) of a run from what its worker wrote to the store, if anything."""
    try:
        body = read_progress(json.loads(store.get(PROGRESS_KEY.format(id=record["id"])).data))
    except (KeyNotFound, ValueError):  # none yet, or one that cannot be read
        return None, None
    except Exception:  # the store unreachable for a moment: no progress this time
        return None, None
    v2 = record.get("v2")
    tracker = ProgressTracker(total=v2["nodes"] if v2 else 0)
    for event in body["events"]:
        if "data" in event:
            tracker.add(event["type"], event["data"])
    preview = None
    shown = body.get("preview")
    data = shown.get("data") if shown else None
    if data is not None and isinstance(data.get("image"), str):
        preview = {"node_id": str(data.get("node_id") or ""), "content_type": data.get("image_type") or "image/jpeg",
                   "data_base64": data["image"]}
    return tracker.snapshot(), preview


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def output_json(record: ExecutionRecord, node: str, key: str, item: dict, mount: Mount,
                size: int | None = None) -> dict:
    import mimetypes
    from pathlib import PurePosixPath

    asset_id = output_id(record["id"], item["sha256"])
    name = PurePosixPath(item["filename"]).name
    size = item.get("size") if isinstance(item.get("size"), int) else size
    return {"node_id": node, "name": name, "type": KINDS.get(key, "file"),
            "content_type": mimetypes.guess_type(name)[0] or OCTETS, "size_bytes": size or 0, "id": asset_id,
            "hash": None, "url": mount.url(f"/assets/{asset_id}/content"),
            "url_expires_at": _iso(datetime.now(timezone.utc) + URL_LIFETIME), "job_id": record["id"]}


class JobError(TypedDict):
    code: str  # node_execution_error for a node's failure, else the execution's own code
    message: str
    node_id: str | None
    class_type: str | None
    traceback: None


class JobMetrics(TypedDict):
    queue_ms: int | None
    execution_ms: int | None


class JobUrls(TypedDict):
    self: str
    events: str
    cancel: str


class Job(TypedDict):
    """The Comfy API v2 Job of an execution (GET /jobs/{id}, and what POST /jobs and a cancel answer)."""

    id: str
    status: str  # queued, running, succeeded, failed, canceled
    created_at: str
    started_at: str | None
    completed_at: str | None
    expires_at: str
    queue_position: None
    progress: dict[str, Any] | None  # JobProgress.snapshot()
    outputs: list[dict[str, Any]]  # output_json()
    error: JobError | None
    metrics: JobMetrics
    urls: JobUrls
    metadata: dict[str, str]
    template: NotRequired[str]
    environment: NotRequired[str]
    webhook: NotRequired[Webhook]


def job_error(error: object) -> JobError | None:
    if not isinstance(error, dict):
        return None
    code = str(error.get("code") or "failed")
    message = error.get("message") or error.get("exception_message") or code
    node = error.get("node_id")
    return {"code": "node_execution_error" if code == "node_error" else code, "message": str(message),
            "node_id": str(node) if node is not None else None,
            "class_type": error.get("node_type") or error.get("class_type"), "traceback": None}


def job_json(record: ExecutionRecord, mount: Mount, retention_days: int, progress: dict | None = None,
             live_outputs: list[tuple[str, str, dict]] | None = None, sizes=None) -> Job:
    """The v2 Job of an execution record. `progress` and `live_outputs` are what is known beyond the record
    while it runs; `sizes(sha256)` gives a blob's size for outputs recorded without one."""
    status = STATUS.get(record["state"], "failed")
    started, finished = _time(record.get("started_at")), _time(record.get("finished_at"))
    created = _time(record.get("created_at")) or datetime.now(timezone.utc)
    items = output_items(record) if record["state"] in FINAL else (live_outputs or [])
    seen, outputs = set(), []
    for node, key, item in items:
        if item["sha256"] in seen:
            continue
        seen.add(item["sha256"])
        size = None if isinstance(item.get("size"), int) or sizes is None else sizes(item["sha256"])
        outputs.append(output_json(record, node, key, item, mount, size))
    if status == "succeeded":
        v2 = record.get("v2")
        total = (v2["nodes"] if v2 else 0) or (progress or {}).get("nodes_total") or 1
        progress = {"value": 1.0, "nodes_done": total, "nodes_total": total, "current_node": None,
                    "current_node_class": None, "step": None, "steps": None, "message": None}
    job_id = record["id"]
    job: Job = {
        "id": job_id, "status": status, "created_at": _iso(created),
        "started_at": _iso(started) if started else None, "completed_at": _iso(finished) if finished else None,
        "expires_at": _iso(created + timedelta(days=retention_days)), "queue_position": None,
        "progress": progress, "outputs": outputs, "error": job_error(record.get("error")) if status != "succeeded"
        else None,
        "metrics": {"queue_ms": _ms(created, started), "execution_ms": _ms(started, finished)},
        "urls": {"self": mount.path(f"/jobs/{job_id}"), "events": mount.path(f"/jobs/{job_id}/events"),
                 "cancel": mount.path(f"/jobs/{job_id}/cancel")},
        "metadata": record.get("labels") or {},
    }
    if template := record.get("template"):
        job["template"] = template
    if environment := record.get("environment"):
        job["environment"] = environment
    if record.get("webhook"):
        job["webhook"] = record["webhook"]
    return job


def _ms(start: datetime | None, end: datetime | None) -> int | None:
    return int((end - start).total_seconds() * 1000) if start and end else None


def summary_json(record: ExecutionSummary) -> dict:
    """A `GET /jobs` list item (lighter than a Job)."""
    return {"id": record["id"], "status": STATUS.get(record["state"], "failed"),
            "create_time": record.get("created_at"),
            "update_time": record.get("finished_at") or record.get("started_at") or record.get("created_at"),
            "metadata": record.get("labels") or {}, "template": record.get("template"),
            "environment": record.get("environment")}
