"""Sampler previews on their way from the worker's ComfyUI to the page: the binary frame read as an event,
an async run's latest preview beside its events in the store (and relayed once per new one), and
malformed previews dropped before they reach the page."""

from __future__ import annotations

import base64
import json
import struct

from comfyui_sagemaker.aws.runtime import PROGRESS_PREFIX, _relay_progress
from comfyui_sagemaker.core.executions import ExecutionService
from comfyui_sagemaker.local.folder_store import FolderStore
from comfyui_sagemaker.worker.comfy import PREVIEW_EVENT, preview_event

JPEG = b"\xff\xd8\xff\xe0fake"


def test_a_preview_frame_becomes_an_event_for_the_node_executing():
    frame = struct.pack(">I", 1) + struct.pack(">I", 1) + JPEG
    event = preview_event(frame, "p1", "7")
    assert event == {"type": PREVIEW_EVENT, "data": {"prompt_id": "p1", "node_id": "7", "image_type": "image/jpeg",
                                                     "image": base64.b64encode(JPEG).decode()}}
    png = preview_event(struct.pack(">I", 1) + struct.pack(">I", 2) + b"png", "p1", None)
    assert png["data"]["image_type"] == "image/png"


def test_other_frames_are_not_previews():
    assert preview_event(struct.pack(">I", 3) + b"text frame!", "p", "1") is None  # BinaryEventTypes.TEXT
    assert preview_event(struct.pack(">I", 1) + struct.pack(">I", 9) + JPEG, "p", "1") is None
    assert preview_event(b"\x00\x00", "p", "1") is None


def test_an_async_runs_latest_preview_is_relayed_once_each(tmp_path):
    store = FolderStore(tmp_path)
    key = f"{PROGRESS_PREFIX}e1.json"
    got: list[dict] = []
    preview = {"type": PREVIEW_EVENT, "data": {"image": "AA=="}}
    store.put(key, json.dumps({"events": [{"type": "executing"}], "preview": preview, "preview_seq": 3}).encode())
    seen = _relay_progress(store, "e1", (0, 0), got.append)
    assert got == [{"type": "executing"}, preview] and seen == (1, 3)
    assert _relay_progress(store, "e1", seen, got.append) == (1, 3) and len(got) == 2  # nothing new
    store.put(key, json.dumps({"events": [{"type": "executing"}, {"type": "progress_state"}], "preview": preview,
                               "preview_seq": 5}).encode())
    assert _relay_progress(store, "e1", seen, got.append) == (2, 5)
    assert got[2:] == [{"type": "progress_state"}, preview]


def test_an_earlier_workers_event_list_is_still_read(tmp_path):
    store = FolderStore(tmp_path)
    store.put(f"{PROGRESS_PREFIX}e2.json", json.dumps([{"type": "execution_start"}]).encode())
    got: list[dict] = []
    assert _relay_progress(store, "e2", (0, 0), got.append) == (1, 0) and got == [{"type": "execution_start"}]


class Page:
    def __init__(self):
        self.sent: list[tuple] = []

    def __call__(self, kind, data, sid):
        self.sent.append((kind, data, sid))


def service_with(page: Page) -> ExecutionService:
    svc = ExecutionService.__new__(ExecutionService)  # only the relay: no store, no endpoints
    svc.send = page
    svc.listeners = []
    return svc


def test_a_preview_reaches_only_the_page_that_queued_the_run_and_malformed_ones_are_dropped():
    page = Page()
    svc = service_with(page)
    record = {"id": "e", "prompt_id": "pid", "client_id": "c1", "state": "running"}
    good = {"image_type": "image/jpeg", "image": base64.b64encode(JPEG).decode(), "node_id": "4"}
    svc._relay(record, {"type": PREVIEW_EVENT, "data": good})
    assert page.sent == [(PREVIEW_EVENT, {"prompt_id": "pid", "image_type": "image/jpeg", "image": JPEG,
                                          "node_id": "4"}, "c1")]
    for bad in ({**good, "image_type": "text/html"}, {**good, "image": "not base64!"}, {**good, "image": 5},
                {**good, "image": base64.b64encode(b"x" * (4 * 1024 * 1024 + 1)).decode()}):
        svc._relay(record, {"type": PREVIEW_EVENT, "data": bad})
    svc._relay({**record, "state": "succeeded"}, {"type": PREVIEW_EVENT, "data": good})  # after its end
    svc._relay({**record, "client_id": None}, {"type": PREVIEW_EVENT, "data": good})  # a program's run
    assert len(page.sent) == 1
