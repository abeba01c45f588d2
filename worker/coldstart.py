"""A worker's cold start, step by step: each phase's time (and the bytes it moved), and what it does now.

Phases, in order: `manifest` (read and checked, also against the free bytes of the local volume the caches are
on: `disk_path`, `free_bytes`, `needed_bytes`; the report's `disk` says the same), `packs` (custom node
archives fetched and extracted), `models` (fetched and verified: bytes, bytes per second), `python_packages`
(the lock compared, missing pure-Python packages installed), `comfyui_start` (one per ComfyUI, with its
device), `warmup_inputs` and `warmup` (with a warm-up, worker/warmup.py: one per ComfyUI, done or failed
with its error), and `first_prompt_model_load` (one per ComfyUI not warmed, at its first prompt: the time from
the prompt's start to the sampler's first step, or in loader nodes when there is no sampler; ComfyUI loads
models lazily, so a cold start ends there). `activity` says what is running now, with byte progress ("models
2.1 of 7.6 GB").

Where it is seen: the worker's `GET /status` (`phases`, `activity`), its log (one line per phase), and,
for SageMaker endpoints, whose containers the extension cannot reach, the store:
`workers/<environment>/<start key>.json`, written while the worker starts and when a ComfyUI changes
state. Start keys sort newest first (an inverted millisecond clock), so the newest report of an
environment is the first key of one LIST (`aws/sagemaker_endpoints.py` reads it for the endpoint).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

from ..core.worker_contract import REPORTS as REPORTS  # the store layout of the reports lives below worker/
from ..core.worker_contract import WorkerEvent, WorkerReport, report_folder

log = logging.getLogger("comfyui_sagemaker.worker")

_CLOCK_MAX = 10 ** 13 - 1  # milliseconds: 13 digits until the year 2286


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def human_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def progress_text(what: str, done: int, total: int) -> str:
    """'models 2.1 of 7.6 GB': both in the unit of the total."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if total >= size:
            return f"{what} {done / size:.1f} of {total / size:.1f} {unit}"
    return f"{what} {done} of {total} B"


def report_key(environment: str, started_epoch: float, instance: str) -> str:
    inverted = _CLOCK_MAX - int(started_epoch * 1000)
    safe = re.sub(r"[^A-Za-z0-9._-]", "-", instance)[:60] or "worker"
    return f"{report_folder(environment)}{inverted:013d}-{safe}-{uuid.uuid4().hex[:6]}.json"


class ColdStart:
    """Thread-safe: the materialiser runs in a thread, ComfyUIs report from the event loop."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.started_epoch = time.time()
        self.started_at = now_iso()
        self.phases: list[dict] = []
        self.activity: str | None = None
        self._lock = threading.Lock()
        self.on_change: Callable[[bool], None] = lambda urgent: None

    def _changed(self, urgent: bool = False) -> None:
        try:
            self.on_change(urgent)
        except Exception as err:  # a report is a courtesy: never fail the start for it
            log.warning("cold start report: %s", err)

    @contextmanager
    def phase(self, name: str, label: str, **fields) -> Iterator[dict]:
        """Time a phase; the caller may add fields (bytes, count, detail) to the dict it gets."""
        start = time.monotonic()
        entry = {"name": name, "label": label, "state": "running", "start_s": round(start - self.t0, 3), **fields}
        with self._lock:
            self.phases.append(entry)
        self._changed(urgent=True)
        try:
            yield entry
        except BaseException as err:
            self._end(entry, start, "failed", str(err)[:300])
            raise
        self._end(entry, start, "done")

    def _end(self, entry: dict, start: float, state: str, error: str | None = None) -> None:
        seconds = time.monotonic() - start
        with self._lock:
            entry.update(state=state, seconds=round(seconds, 3))
            if error:
                entry["error"] = error
            if entry.get("bytes") and seconds > 0 and entry.get("bytes_per_s") is None:
                entry["bytes_per_s"] = round(entry["bytes"] / seconds)
            self.activity = None
        log.info("cold start: %s", describe(entry))
        self._changed(urgent=True)

    def record(self, name: str, label: str, seconds: float, **fields) -> dict:
        """A phase measured elsewhere (a ComfyUI's start, its first prompt's model load)."""
        start_s = round(time.monotonic() - self.t0 - seconds, 3)
        entry = {"name": name, "label": label, "state": "done", "start_s": start_s, "seconds": round(seconds, 3),
                 **fields}
        with self._lock:
            self.phases.append(entry)
        log.info("cold start: %s", describe(entry))
        self._changed(urgent=True)
        return entry

    def set_activity(self, text: str | None) -> None:
        with self._lock:
            self.activity = text
        self._changed()

    def progress(self, what: str, total: int) -> Callable[[int], None]:
        """An on_bytes callback that keeps `activity` at '<what> <done> of <total>'."""
        done = [0]
        lock = threading.Lock()

        def on_bytes(n: int) -> None:
            with lock:
                done[0] += n
                text = progress_text(what, max(0, done[0]), total)
            self.set_activity(text)

        return on_bytes

    def to_json(self) -> list[dict]:
        with self._lock:
            return [dict(p) for p in self.phases]


def describe(entry: dict) -> str:
    """One log line: 'models: 7.6 GB in 31.2 s (245.0 MB/s)'."""
    parts = [entry.get("label") or entry["name"]]
    if entry.get("comfyui") is not None:
        parts[0] += f" (ComfyUI {entry['comfyui']}{', ' + entry['device'] if entry.get('device') else ''})"
    text = f"{parts[0]}: "
    if entry.get("bytes") is not None:
        text += f"{human_bytes(entry['bytes'])} in "
    text += f"{entry.get('seconds', 0):.2f} s"
    if entry.get("bytes_per_s"):
        text += f" ({human_bytes(entry['bytes_per_s'])}/s)"
    if entry.get("detail"):
        text += f"; {entry['detail']}"
    if entry.get("state") == "failed":
        text += f"; FAILED: {entry.get('error')}"
    return text


class StoreReport:
    """Writes the worker's report (what `snapshot()` returns) to the store: at once for a phase or state
    change, at most every `interval` seconds for byte progress. Never fails the worker."""

    def __init__(self, store, key: str, snapshot: Callable[[], WorkerReport], interval: float = 2.0):
        self.store, self.key, self.snapshot, self.interval = store, key, snapshot, interval
        self._wake = threading.Event()
        self._urgent = False
        self._dirty = False
        self._stop = False
        self._last = 0.0
        self._thread = threading.Thread(target=self._loop, daemon=True, name="worker-report")

    @staticmethod
    def instance_name() -> str:
        return socket.gethostname() or "worker"

    def start(self) -> StoreReport:
        self._thread.start()
        return self

    def poke(self, urgent: bool = False) -> None:
        self._dirty = True
        self._urgent = self._urgent or urgent
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop:
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._dirty and (self._urgent or time.monotonic() - self._last >= self.interval):
                self.write()

    def write(self) -> None:
        self._dirty = self._urgent = False
        self._last = time.monotonic()
        try:
            self.store.put(self.key, json.dumps({**self.snapshot(), "updated_at": now_iso()}).encode())
        except Exception as err:
            log.warning("cannot write the worker report %s: %s", self.key, err)

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.write()


class FirstPromptTimer:
    """A ComfyUI's first prompt, from its events: ComfyUI loads models lazily (loader nodes read them, the
    sampler moves them to the device), so a cold start's model load is the time from the prompt's start to
    the first step of a node that reports progress (a sampler), or, with none, the time in loader nodes."""

    def __init__(self, prompt: dict, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.types = {str(k): str((v or {}).get("class_type", "")) for k, v in prompt.items() if isinstance(v, dict)}
        self.t_start: float | None = None
        self.t_step: float | None = None
        self.node: tuple[str, float] | None = None
        self.loaders = 0.0
        self.loader_nodes: list[str] = []

    def _close_node(self, now: float) -> None:
        if self.node is not None:
            node_id, since = self.node
            if "Loader" in self.types.get(node_id, ""):
                self.loaders += now - since
                self.loader_nodes.append(self.types[node_id])
            self.node = None

    def feed(self, event: WorkerEvent) -> None:
        now = self.clock()
        kind, data = event.get("type"), event.get("data") or {}
        if kind == "execution_start":
            self.t_start = now
        elif kind == "executing" and self.t_step is None:
            self._close_node(now)
            if data.get("node") is not None:
                self.node = (str(data["node"]), now)
        elif kind == "progress" and self.t_step is None and self.t_start is not None:
            self.t_step = now
            self._close_node(now)

    def finish(self) -> tuple[float, str]:
        """(seconds of model load, what was measured)."""
        now = self.clock()
        if self.t_step is None:
            self._close_node(now)
        ran = now - (self.t_start or now)
        if self.t_step is not None and self.t_start is not None:
            return self.t_step - self.t_start, f"start to first sampler step; the prompt ran {ran:.2f} s"
        names = ", ".join(sorted(set(self.loader_nodes))) or "no loader node"
        return self.loaders, f"time in loader nodes ({names}), no sampler step; the prompt ran {ran:.2f} s"
