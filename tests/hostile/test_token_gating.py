"""Where a token is needed (configured, or ComfyUI listening beyond this machine), reads need it too and the
extension's broadcasts go only to browsers that subscribed with it. (Tests never listen off 127.0.0.1: a
configured token puts a loopback ComfyUI under the same rule; the off-loopback case is in test_guard.)"""

from __future__ import annotations

import json
import time
import uuid

import pytest
import requests
from harness.comfyui import ComfyUI
from harness.images import png

pytestmark = pytest.mark.comfyui

TOKEN = "s3cret-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    server = ComfyUI(tmp_path_factory.mktemp("guarded") / "base", env={"COMFYUI_SAGEMAKER_TOKEN": TOKEN}).start()
    yield server
    server.stop()


@pytest.mark.parametrize("path", ["/sagemaker/templates", "/sagemaker/environments", "/sagemaker/snapshot",
                                  "/sagemaker/executions", "/sagemaker/endpoints", "/sagemaker/inputs",
                                  "/sagemaker/models", "/sagemaker/openapi.json", "/api/sagemaker/templates"])
def test_reads_need_the_token(guarded, path):
    r = requests.get(guarded.url + path, timeout=30)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
    assert requests.get(guarded.url + path, headers={"X-SageMaker-Token": "wrong"}, timeout=30).status_code == 403
    assert requests.get(guarded.url + path, headers={"X-SageMaker-Token": TOKEN}, timeout=30).status_code == 200


def test_health_and_rules_say_only_that_a_token_is_needed(guarded):
    health = requests.get(guarded.url + "/sagemaker/health", timeout=30).json()
    assert health["token_required"] is True and health["authorized"] is False
    assert "store" not in health and "comfyui_version" not in health
    full = requests.get(guarded.url + "/sagemaker/health", headers={"X-SageMaker-Token": TOKEN}, timeout=30).json()
    assert full["authorized"] is True and full["store"]["kind"] == "folder"
    assert requests.get(guarded.url + "/sagemaker/rules", timeout=30).status_code == 200


def test_broadcasts_reach_only_subscribed_browsers(guarded):
    client = guarded.client()
    outsider, member = uuid.uuid4().hex, uuid.uuid4().hex
    ws_out, ws_in = client.websocket(outsider), client.websocket(member)
    try:
        r = requests.post(guarded.url + "/sagemaker/events/subscribe", json={"client_id": outsider}, timeout=30)
        assert r.status_code == 403  # no token: no subscription
        r = requests.post(guarded.url + "/sagemaker/events/subscribe", json={"client_id": member}, timeout=30,
                          headers={"X-SageMaker-Token": TOKEN})
        assert r.status_code == 200
        name = f"g{uuid.uuid4().hex[:8]}.png"
        (guarded.input_dir / name).write_bytes(png())  # the input watcher announces it: sagemaker.input
        got = receive_until(ws_in, lambda e: e["type"] == "sagemaker.input" and e["data"].get("name") == name)
        assert got["data"]["name"] == name
        # Then something for the outsider alone: everything broadcast before it would have arrived first.
        prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 1, "height": 1, "batch_size": 1, "color": 2}},
                  "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
        prompt_id = client.queue(prompt, outsider)
        seen = []
        receive_until(ws_out, lambda e: seen.append(e["type"]) or (
            e["type"] == "execution_success" and e["data"].get("prompt_id") == prompt_id))
        assert not [t for t in seen if t.startswith("sagemaker.")], seen
    finally:
        ws_out.close()
        ws_in.close()


def receive_until(ws, wanted, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = ws.recv()
        if isinstance(msg, str):
            event = json.loads(msg)
            if wanted(event):
                return event
    raise AssertionError("event not received")
