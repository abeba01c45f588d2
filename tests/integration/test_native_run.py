"""A remote run is a ComfyUI run (server side): it sits in ComfyUI's own queue while in flight, ComfyUI's
/interrupt with its prompt id cancels it (and never a local run), it stays in ComfyUI's history with its
outputs and workflow, and a prompt ComfyUI would refuse is refused before it is sent, in /prompt's own
400 shape (node_errors), except for a model this ComfyUI lacks but the environment carries."""

from __future__ import annotations

import shutil
import time
import uuid

import pytest
from harness.envs import template_on, wait_execution
from harness.images import png
from harness.prompts import scale_prompt

pytestmark = pytest.mark.comfyui


@pytest.fixture(scope="module")
def target(comfyui, local_environment, tmp_path_factory):
    """A template of a graph that can be held open, run on the session's shared environment."""
    client = comfyui.client()
    client.upload_image("native.png", png(4, 4, (10, 20, 30)))
    held = scale_prompt("native.png", prefix="native", wait_for="/nonexistent")
    return template_on(client, held, local_environment.name), tmp_path_factory.mktemp("signals")


def run(client, template, prompt, client_id=None, workflow=None):
    r = client.post("/sagemaker/executions", json={"prompt": prompt, "template": template, "workflow": workflow,
                                                   "client_id": client_id or uuid.uuid4().hex})
    assert r.status_code == 202, r.text
    return r.json()


def test_a_remote_run_is_in_comfyuis_queue_and_comfyuis_interrupt_cancels_it(client, target):
    template, signals = target
    body = run(client, template, scale_prompt("native.png", 0.3, "held", wait_for=str(signals / "never")))
    wait_execution(client, body["execution_id"], states=("running",))
    queue = client.get("/queue").json()
    assert [item[1] for item in queue["queue_running"]] == [body["prompt_id"]]
    assert client.get("/prompt").json()["exec_info"]["queue_remaining"] == 1

    r = client.post("/interrupt", json={"prompt_id": body["prompt_id"]})  # what ComfyUI's Cancel sends
    assert r.status_code == 200
    assert wait_execution(client, body["execution_id"])["state"] == "cancelled"
    assert client.get("/queue").json()["queue_running"] == []
    history = client.get(f"/history/{body['prompt_id']}").json()[body["prompt_id"]]
    assert history["status"]["status_str"] == "error"
    assert [m[0] for m in history["status"]["messages"]] == ["execution_start", "execution_interrupted"]

    # ComfyUI's interrupt flag was not raised: the next local run goes through.
    local, _ = comfyui_run(client, scale_prompt("native.png", 0.7, "local-after"))
    assert local["status"]["status_str"] == "success"


def comfyui_run(client, prompt):
    prompt_id = client.post("/prompt", json={"prompt": prompt, "client_id": uuid.uuid4().hex}).json()["prompt_id"]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        entry = client.get(f"/history/{prompt_id}").json().get(prompt_id)
        if entry and entry["status"]["completed"] is not None:
            return entry, prompt_id
        time.sleep(0.1)
    raise AssertionError(f"local run {prompt_id} did not end")


def test_a_finished_remote_run_is_in_comfyuis_history_with_outputs_and_workflow(client, target):
    template, signals = target
    (signals / "go").write_text("")
    workflow = {"nodes": [{"id": 1, "type": "LoadImage"}], "links": [], "version": 0.4}
    prompt = scale_prompt("native.png", 0.4, "hist", wait_for=str(signals / "go"))
    body = run(client, template, prompt, workflow=workflow)
    record = wait_execution(client, body["execution_id"])
    assert record["state"] == "succeeded", record
    entry = client.get(f"/history/{body['prompt_id']}").json()[body["prompt_id"]]
    assert entry["status"] == {"status_str": "success", "completed": True, "messages": entry["status"]["messages"]}
    image = entry["outputs"]["3"]["images"][0]
    assert image["subfolder"] == f"sagemaker/{body['execution_id']}" and image["type"] == "output"
    assert client.view(image["filename"], image["subfolder"], "output")[:8] == b"\x89PNG\r\n\x1a\n"
    number, prompt_id, sent, extra, outputs = entry["prompt"][:5]
    assert prompt_id == body["prompt_id"] and sent == prompt and outputs == ["3"]
    assert extra["extra_pnginfo"]["workflow"] == workflow
    assert body["prompt_id"] in client.get("/history?max_items=5").json()


def test_a_prompt_comfyui_would_refuse_is_refused_first_in_prompts_own_shape(client, target):
    template, _ = target
    bad = scale_prompt("native.png", 0.5, "bad")
    del bad["3"]["inputs"]["images"]  # SaveImage without its image
    local = client.post("/prompt", json={"prompt": bad})
    assert local.status_code == 400
    r = client.post("/sagemaker/executions", json={"prompt": bad, "template": template})
    assert r.status_code == 400, r.text
    ours = r.json()
    assert ours["error"]["code"] == "prompt_invalid"
    assert ours["node_errors"] == local.json()["node_errors"]
    assert {k: ours["error"][k] for k in ("type", "message", "details")} == \
        {k: local.json()["error"][k] for k in ("type", "message", "details")}
    assert not [e for e in client.get("/sagemaker/executions?limit=50").json()["executions"]
                if e["template"] == template and e["state"] in ("queued", "running")]


def test_a_model_this_comfyui_lacks_but_the_environment_carries_is_no_error(comfyui, client, target):
    template, signals = target
    model = comfyui.base / "models" / "loras" / "style.safetensors"
    aside = signals / "style.safetensors"
    shutil.move(model, aside)
    try:
        prompt = scale_prompt("native.png", 0.45, "nomodel", wait_for=str(signals / "go"))
        (signals / "go").write_text("")
        assert client.post("/prompt", json={"prompt": prompt}).status_code == 400  # ComfyUI alone refuses it
        body = run(client, template, prompt)
        assert wait_execution(client, body["execution_id"])["state"] == "succeeded"
    finally:
        shutil.move(aside, model)


def test_a_node_type_this_comfyui_lacks_is_named_when_a_template_is_published(client):
    prompt = {"1": {"inputs": {}}, "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}}
    workflow = {"nodes": [{"id": 1, "type": "SuperResolutionMagic"}, {"id": 2, "type": "SaveImage"}]}
    r = client.post("/sagemaker/templates", json={"name": f"M{uuid.uuid4().hex[:8]}", "workflow": workflow,
                                                  "prompt": prompt})
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "node type SuperResolutionMagic is not installed" in message
    assert "class_type" not in message and "prompt node" not in message

