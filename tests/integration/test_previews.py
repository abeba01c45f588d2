"""Sampler previews of a remote run reach the page that queued it as ComfyUI's own binary frames: the
PREVIEW_IMAGE frame always, and the frame with metadata (node, prompt id) to a page that declared
supports_preview_metadata, as ComfyUI does for a local run. The previews come from a node that reports
progress with a preview image as a sampler does (ComfyUI's ProgressBar), no model needed."""

from __future__ import annotations

import io
import json
import struct
import time
import uuid

import pytest
from harness.envs import template_on
from PIL import Image

pytestmark = pytest.mark.comfyui

STEPS = 4


def preview_prompt(color: int = 0x336699) -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 8, "batch_size": 1, "color": color}},
            "2": {"class_type": "SMTestPreview", "inputs": {"image": ["1", 0], "steps": STEPS, "pause": 0.05}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "preview"}}}


@pytest.fixture(scope="module")
def target(comfyui, local_environment):
    """A template of the preview graph, run on the session's shared environment."""
    return template_on(comfyui.client(), preview_prompt(), local_environment.name)


def frames_of_a_run(client, template: str, metadata: bool, color: int = 0x336699) -> tuple[str, list, list[str]]:
    """Run the template with a page's websocket open; the binary frames it got and the event types. Each
    run needs its own color: ComfyUI would answer an unchanged node from its cache, without previews."""
    client_id = uuid.uuid4().hex
    ws = client.websocket(client_id)
    try:
        if metadata:  # what the frontend sends first on its socket
            ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        r = client.post("/sagemaker/executions", json={"prompt": preview_prompt(color), "template": template,
                                                       "client_id": client_id})
        assert r.status_code == 202, r.text
        prompt_id = r.json()["prompt_id"]
        frames, types = [], []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            msg = ws.recv()
            if isinstance(msg, bytes):
                frames.append((struct.unpack(">I", msg[:4])[0], msg[4:]))
                continue
            event = json.loads(msg)
            if (event.get("data") or {}).get("prompt_id") == prompt_id:
                types.append(event["type"])
                if event["type"] in ("execution_success", "execution_error"):
                    break
        return prompt_id, frames, types
    finally:
        ws.close()


def test_a_remote_runs_previews_reach_the_page_as_comfyuis_preview_frames(client, target):
    prompt_id, frames, types = frames_of_a_run(client, target, metadata=False)
    assert types[-1] == "execution_success", types
    previews = [data for kind, data in frames if kind == 1]  # BinaryEventTypes.PREVIEW_IMAGE
    assert len(previews) == STEPS, [kind for kind, _ in frames]
    image_type, image = struct.unpack(">I", previews[-1][:4])[0], previews[-1][4:]
    assert image_type == 1  # JPEG
    decoded = Image.open(io.BytesIO(image))
    assert decoded.format == "JPEG" and decoded.size == (64, 32)  # ComfyUI fits it to the preview size, 64

    r, g, b = decoded.convert("RGB").getpixel((32, 16))
    assert abs(r - 0x33) <= 8 and abs(g - 0x66) <= 8 and abs(b - 0x99) <= 8
    assert not [kind for kind, _ in frames if kind == 4]  # this page did not ask for metadata


def test_a_page_that_supports_preview_metadata_gets_the_node_and_its_prompt_id(client, target):
    prompt_id, frames, _ = frames_of_a_run(client, target, metadata=True, color=0x010203)
    with_metadata = [data for kind, data in frames if kind == 4]  # PREVIEW_IMAGE_WITH_METADATA
    assert len(with_metadata) == STEPS and len([k for k, _ in frames if k == 1]) == STEPS
    length = struct.unpack(">I", with_metadata[0][:4])[0]
    metadata = json.loads(with_metadata[0][4:4 + length])
    assert metadata["prompt_id"] == prompt_id and metadata["node_id"] == "2"
    assert metadata["image_type"] == "image/jpeg"
    assert Image.open(io.BytesIO(with_metadata[0][4 + length:])).format == "JPEG"


def test_a_page_that_did_not_queue_the_run_gets_no_preview(client, target):
    other_id = uuid.uuid4().hex
    other = client.websocket(other_id)
    try:
        _, frames, _ = frames_of_a_run(client, target, metadata=False, color=0x040506)
        assert frames
        # Then something for the other page alone (a local prompt it queued, with no previews): a preview
        # frame sent to it would have arrived first, on the same socket.
        marker = client.queue({"1": {"class_type": "EmptyImage", "inputs": {"width": 1, "height": 1,
                                                                           "batch_size": 1, "color": 0x070809}},
                               "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0],
                                                                           "filename_prefix": "marker"}}}, other_id)
        got = []
        while True:
            msg = other.recv()
            if isinstance(msg, bytes):
                got.append(msg)
                continue
            event = json.loads(msg)
            if event["type"] in ("execution_success", "execution_error") and \
                    (event.get("data") or {}).get("prompt_id") == marker:
                break
        assert got == []
    finally:
        other.close()
