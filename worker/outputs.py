"""What a run leaves: its output files go to the store by content; a non-streamed run's coarse progress
(and latest sampler preview) goes to the store for the caller to relay."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

from ..core.errors import StoreUnavailable
from ..core.fs.hashing import file_sha256
from ..core.store import KeyExists
from ..core.worker_contract import (
    PROGRESS_PREFIX,
    PROTOCOL_VERSION,
    RESULTS_PREFIX,
    ExecutionProgress,
    WorkerEvent,
    WorkerResult,
)
from .comfy import PREVIEW_EVENT, ComfyProcess
from .materialise import safe_relative

log = logging.getLogger("comfyui_sagemaker.worker")


def store_outputs(store, comfy: ComfyProcess, outputs: dict) -> dict:
    """Every ui key's files (images, gifs, video, audio, 3D, ...) go to the store by content; the files are
    read from the folders of the ComfyUI that made them."""
    out: dict = {}
    for node_id, ui in outputs.items():
        node_out = out[node_id] = {}
        for key, items in (ui or {}).items():
            if not isinstance(items, list):
                node_out[key] = items
                continue
            node_out[key] = [store_file(store, comfy, item) if is_file_item(item) else item for item in items]
    return out


def store_file(store, comfy: ComfyProcess, item: dict) -> dict:
    folder = {"output": "output", "temp": "temp", "input": "input"}.get(item.get("type", "output"), "output")
    sub = item.get("subfolder") or ""
    path: Path = comfy.folder(folder) / (safe_relative(sub) if sub else "") / safe_relative(item["filename"])
    digest = file_sha256(path)
    if not store.has_blob(digest, path.stat().st_size, str(path)):
        store.put_blob(digest, str(path))
    return {**item, "sha256": digest, "size": path.stat().st_size}


class AsyncProgress:
    """Coarse progress of a non-streamed run (SageMaker async), written to the store for the caller to
    relay at most every `interval` seconds (core/worker_contract.py's ExecutionProgress): {"events": the run's
    events so far, "preview": the latest sampler preview, with a sequence number the caller compares}.

    `events` only grows (the caller relays what is past its last look). ComfyUI's progress_state is a
    snapshot of every node, sent on each node's change: only the latest of a write's interval is kept,
    appended when the progress is written (and before the run's final event), so a 60-node prompt writes
    a few snapshots instead of over a hundred."""

    RELAYED = ("execution_start", "execution_cached", "executing", "progress_state", "execution_success",
               "execution_error", "execution_interrupted")
    FINAL = ("execution_success", "execution_error", "execution_interrupted")

    def __init__(self, store, execution_id: str, interval: float = 1.0):
        self.store, self.key, self.interval = store, f"{PROGRESS_PREFIX}{execution_id}.json", interval
        self.events: list[WorkerEvent] = []
        self.state: WorkerEvent | None = None  # the latest progress_state not written yet
        self.preview: WorkerEvent | None = None
        self.previews = 0
        self.last = 0.0

    async def add(self, event: WorkerEvent) -> None:
        kind = event.get("type")
        if kind == PREVIEW_EVENT:
            self.preview, self.previews = event, self.previews + 1
        elif kind == "progress_state":
            self.state = event
        elif kind in self.RELAYED:
            if kind in self.FINAL:
                self._take_state()
            self.events.append(event)
        else:
            return
        if time.monotonic() - self.last >= self.interval:
            await self.flush()

    def _take_state(self) -> None:
        if self.state is not None:
            self.events.append(self.state)
            self.state = None

    async def flush(self) -> None:
        self.last = time.monotonic()
        self._take_state()
        body: ExecutionProgress = {"protocol_version": PROTOCOL_VERSION, "events": self.events, "preview": self.preview,
                             "preview_seq": self.previews}
        try:
            await asyncio.to_thread(self.store.put, self.key, json.dumps(body).encode())
        except Exception as err:  # progress is a courtesy: never fail the run for it
            log.warning("cannot write progress: %s", err)


def keep_result(store, execution_id: str, result: WorkerResult) -> bool:
    """Create the run's result in the store (core/worker_contract.py RESULTS_PREFIX), once. False when another
    result is already there (someone wrote it before this run ended: the run's answer must not be that one);
    a store that refuses or fails is logged and the run's answer stands (a caller then reads SageMaker's copy)."""
    key, data = f"{RESULTS_PREFIX}{execution_id}.json", json.dumps(result).encode()
    try:
        store.create(key, data)
    except KeyExists:
        try:
            return store.get(key).data == data  # this run's own earlier attempt
        except Exception:  # unreadable: not known to be ours
            return False
    except StoreUnavailable as err:
        log.warning("cannot keep the result of %s: %s", execution_id, err)
    return True


def is_file_item(item: object) -> bool:
    return isinstance(item, dict) and isinstance(item.get("filename"), str)


def describe_rejection(body: dict) -> str:
    err = body.get("error")
    err = err if isinstance(err, dict) else {}
    parts = [err.get("message", "ComfyUI refused the prompt")]
    for node_id, node_err in (body.get("node_errors") or {}).items():
        msgs = "; ".join(e.get("details") or e.get("message", "") for e in node_err.get("errors", []))
        parts.append(f"node {node_id} ({node_err.get('class_type')}): {msgs}")
    return " | ".join(p for p in parts if p)
