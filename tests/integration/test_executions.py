"""Prompt on AWS on a real local endpoint, end to end through the routes and ComfyUI's own websocket: a run
that shows as if local (pixels checked), a run held open that leaves ComfyUI's own queue free, and the
extension's own nodes run by the worker. The service's logic (refusals, failures, cancels, concurrency, a worker
that dies, events to the page that queued) is tests/unit/test_executions_service.py's, on FakeEndpoints held
to the real endpoint by tests/unit/test_endpoints_contract.py. These runs share the session's v2 environment
and its local endpoint (tests/integration/conftest.py): no endpoint of their own to start."""

import json
import time
import uuid

import pytest
from harness.envs import unique, wait_execution
from harness.images import pixels, png
from harness.prompts import scale_prompt


def prompt(image="ex.png", factor=0.5, prefix="ex", wait_for=None):
    return scale_prompt(image, factor, prefix, wait_for)

pytestmark = pytest.mark.comfyui


@pytest.fixture(scope="module")
def target(v2):
    """A template of this module bound to the shared environment (it has the test pack and the lora)."""
    client, env, _, _ = v2
    client.upload_image("ex.png", png(4, 4, (200, 100, 50)))
    template = unique("T")
    wait_prompt = prompt(wait_for="/nonexistent")
    r = client.post("/sagemaker/templates", json={"name": template, "workflow": wait_prompt, "prompt": wait_prompt})
    assert r.status_code == 201, r.text
    assert client.put(f"/sagemaker/templates/{template}", json={"environment": env}).status_code == 200
    return template, env


def collect(ws, prompt_id, until=("execution_success", "execution_error", "execution_interrupted"), timeout=120):
    events = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = ws.recv()
        if not isinstance(msg, str):
            continue
        event = json.loads(msg)
        if event["type"].startswith("sagemaker.") or (event.get("data") or {}).get("prompt_id") != prompt_id:
            continue
        events.append(event)
        if event["type"] in until:
            return events
    raise AssertionError(f"no end for {prompt_id}: {events}")


def test_template_runs_on_its_endpoint_and_shows_as_if_local(client, target):
    template, env = target
    client_id = uuid.uuid4().hex
    ws, ws_other = client.websocket(client_id), client.websocket(uuid.uuid4().hex)
    try:
        r = client.post("/sagemaker/executions", json={"prompt": prompt(prefix="first"), "template": template,
                                                       "client_id": client_id})
        assert r.status_code == 202, r.text
        body = r.json()
        events = collect(ws, body["prompt_id"])
        # Only the page that queued it: ComfyUI's websocket carries the events to that client id alone.
        assert comfy_events_of(ws_other, {body["prompt_id"]}) == []
    finally:
        ws.close()
        ws_other.close()
    types = [e["type"] for e in events]
    assert types[0] == "execution_start" and types[-1] == "execution_success", types
    assert "executing" in types and "progress_state" in types
    executed = next(e for e in events if e["type"] == "executed")
    assert executed["data"]["node"] == "3"
    image = executed["data"]["output"]["images"][0]
    assert image["subfolder"] == f"sagemaker/{body['execution_id']}" and image["type"] == "output"
    data = client.view(image["filename"], image["subfolder"], "output")
    assert all(abs(a - b) <= 1 for px in pixels(data) for a, b in zip(px, (100, 50, 25), strict=True))
    record = wait_execution(client, body["execution_id"])
    assert record["state"] == "succeeded" and record["template"] == template and record["environment"] == env
    assert record["outputs"]["3"]["images"][0]["filename"] == image["filename"]
    listed = client.get(f"/sagemaker/executions?template={template}").json()["executions"]
    assert listed[0]["id"] == body["execution_id"]
    assert "client_id" not in client.get(f"/sagemaker/executions/{body['execution_id']}").json()


def test_remote_run_held_open_does_not_block_the_local_queue(client, target, tmp_path):
    template, _ = target
    release = tmp_path / "release"
    r = client.post("/sagemaker/executions", json={"prompt": prompt(prefix="held", wait_for=str(release)),
                                                   "template": template})
    execution_id = r.json()["execution_id"]
    wait_execution(client, execution_id, 60, states=("running",))
    local = {"1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1,
                                                          "color": int(time.time()) % 0xFFFFFF}},
             "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "local"}}}
    entry, events = client.run(local)
    assert events[-1]["type"] == "execution_success"
    # The local prompt finished while the remote one was still held open.
    assert client.get(f"/sagemaker/executions/{execution_id}").json()["state"] == "running"
    release.write_text("go")
    assert wait_execution(client, execution_id)["state"] == "succeeded"


def comfy_events_of(ws, prompt_ids, quiet=0.5):
    """The ComfyUI-named events (not our sagemaker.* broadcasts) a socket got for these prompts, until quiet."""
    ws.settimeout(quiet)
    seen = []
    try:
        while True:
            msg = ws.recv()
            event = json.loads(msg) if isinstance(msg, str) else {}
            if not event.get("type", "sagemaker.").startswith("sagemaker.") \
                    and event.get("data", {}).get("prompt_id") in prompt_ids:
                seen.append(event)
    except Exception:  # the timeout: nothing more came
        pass
    return seen


def test_a_prompt_with_the_extensions_own_nodes_runs_remotely(client, target):
    """The worker has this extension built in: its parameter nodes are no pack an environment must carry."""
    template, _ = target
    p = prompt(prefix="param")
    p["9"] = {"class_type": "SageMakerParamFloat", "inputs": {
        "name": "factor", "description": "", "default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01, "required": False}}
    p["2"]["inputs"]["factor"] = ["9", 0]
    r = client.post("/sagemaker/executions", json={"prompt": p, "template": template})
    assert r.status_code == 202, r.text
    assert wait_execution(client, r.json()["execution_id"])["state"] == "succeeded"
