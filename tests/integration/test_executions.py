"""Prompt on AWS on a local endpoint, through the routes and ComfyUI's own websocket."""

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from harness.envs import publish_environment, wait_endpoint, wait_execution
from harness.images import pixels, png
from harness.prompts import scale_prompt


def prompt(image="ex.png", factor=0.5, prefix="ex", wait_for=None):
    return scale_prompt(image, factor, prefix, wait_for)

pytestmark = pytest.mark.comfyui




@pytest.fixture(scope="module")
def target(comfyui):
    client = comfyui.client()
    client.upload_image("ex.png", png(4, 4, (200, 100, 50)))
    wait_prompt = prompt(wait_for="/nonexistent")
    template, env, _ = publish_environment(client, wait_prompt, endpoint={"kind": "local"})
    assert client.put(f"/sagemaker/templates/{template}", json={"environment": env}).status_code == 200
    assert wait_endpoint(client, env)["state"] == "InService"
    yield template, env
    client.delete(f"/sagemaker/endpoints/{env}")


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
    ws = client.websocket(client_id)
    try:
        r = client.post("/sagemaker/executions", json={"prompt": prompt(prefix="first"), "template": template,
                                                       "client_id": client_id})
        assert r.status_code == 202, r.text
        body = r.json()
        events = collect(ws, body["prompt_id"])
    finally:
        ws.close()
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


def test_ten_concurrent_executions_all_succeed(client, target):
    template, _ = target

    def run(i):
        r = client.post("/sagemaker/executions", json={"prompt": prompt(factor=0.1 + i / 20, prefix=f"c{i}"),
                                                       "template": template})
        assert r.status_code == 202, r.text
        return wait_execution(client, r.json()["execution_id"])["state"]

    with ThreadPoolExecutor(10) as pool:
        assert list(pool.map(run, range(10))) == ["succeeded"] * 10


def error(r, status, code):
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code, r.text
    return r.json()["error"]["message"]


def test_nothing_chosen_unknown_template_and_environment(client):
    assert "choose a template" in error(client.post("/sagemaker/executions", json={"prompt": prompt()}), 400,
                                        "bad_request")
    error(client.post("/sagemaker/executions", json={"prompt": prompt(), "template": "NoSuchT1"}), 404, "not_found")
    error(client.post("/sagemaker/executions", json={"prompt": prompt(), "environment": "NoSuchE1"}), 404,
          "environment_not_found")
    error(client.post("/sagemaker/executions", json={"template": "x"}), 400, "bad_request")


def test_endpoint_missing_is_409(client):
    _, env, _ = publish_environment(client, prompt())  # published without an endpoint
    message = error(client.post("/sagemaker/executions", json={"prompt": prompt(), "environment": env}), 409,
                    "endpoint_not_ready")
    assert "no endpoint" in message


def test_endpoint_creating_is_409_with_the_state(client):
    _, env, _ = publish_environment(client, prompt())
    assert client.post("/sagemaker/endpoints", json={"environment": env}).json()["state"] == "Creating"
    try:
        message = error(client.post("/sagemaker/executions", json={"prompt": prompt(), "environment": env}), 409,
                        "endpoint_not_ready")
        assert "Creating" in message
    finally:
        client.delete(f"/sagemaker/endpoints/{env}")


def test_missing_input_is_400_and_nothing_is_invoked(client, target):
    template, _ = target
    before = len(client.get("/sagemaker/executions?limit=500").json()["executions"])
    message = error(client.post("/sagemaker/executions", json={"prompt": prompt(image="nope.png"),
                                                               "template": template}), 400, "input_missing")
    assert "nope.png" in message
    assert len(client.get("/sagemaker/executions?limit=500").json()["executions"]) == before


def test_prompt_needing_what_the_environment_lacks_is_400(client, target):
    template, _ = target
    p = prompt()
    p["5"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny.safetensors"}}
    message = error(client.post("/sagemaker/executions", json={"prompt": p, "template": template}), 400,
                    "environment_lacks")
    assert "tiny.safetensors" in message
    p = prompt()
    p["5"] = {"class_type": "SomeoneElsesNode", "inputs": {}}
    assert "SomeoneElsesNode" in error(client.post("/sagemaker/executions", json={"prompt": p, "template": template}),
                                       400, "environment_lacks")


def test_remote_failure_marks_the_node_and_carries_the_message(client, target):
    template, _ = target
    p = prompt()
    p["3"]["inputs"]["images"] = ["4", 0]
    p["4"] = {"class_type": "SMTestFail", "inputs": {"image": ["2", 0], "message": "remote boom"}}
    # SMTestFail is in the environment's pack, so the preflight lets it through.
    client_id = uuid.uuid4().hex
    ws = client.websocket(client_id)
    try:
        r = client.post("/sagemaker/executions", json={"prompt": p, "template": template, "client_id": client_id})
        assert r.status_code == 202, r.text
        events = collect(ws, r.json()["prompt_id"])
    finally:
        ws.close()
    err = events[-1]
    assert err["type"] == "execution_error" and err["data"]["node_id"] == "4"
    assert "remote boom" in err["data"]["exception_message"]
    record = wait_execution(client, r.json()["execution_id"])
    assert record["state"] == "failed" and "remote boom" in record["error"]["message"]


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


def test_events_go_only_to_the_browser_that_queued(client, target):
    template, _ = target
    mine, other = uuid.uuid4().hex, uuid.uuid4().hex
    ws_mine, ws_other = client.websocket(mine), client.websocket(other)
    try:
        r = client.post("/sagemaker/executions", json={"prompt": prompt(prefix="mine"), "template": template,
                                                       "client_id": mine})
        collect(ws_mine, r.json()["prompt_id"])
        # A run nobody follows (a program's, no client_id) paints on no canvas: ComfyUI would broadcast.
        nobody = client.post("/sagemaker/executions", json={"prompt": prompt(prefix="nobody"), "template": template})
        assert wait_execution(client, nobody.json()["execution_id"])["state"] == "succeeded"
        assert comfy_events_of(ws_other, {r.json()["prompt_id"], nobody.json()["prompt_id"]}) == []
        assert comfy_events_of(ws_mine, {nobody.json()["prompt_id"]}) == []
    finally:
        ws_mine.close()
        ws_other.close()


def test_cancel(client, target, tmp_path):
    template, _ = target
    release = tmp_path / "never"
    r = client.post("/sagemaker/executions", json={"prompt": prompt(prefix="cx", wait_for=str(release)),
                                                   "template": template})
    execution_id = r.json()["execution_id"]
    wait_execution(client, execution_id, 60, states=("running",))
    assert client.post(f"/sagemaker/executions/{execution_id}/cancel").json()["state"] == "cancelled"
    assert wait_execution(client, execution_id)["state"] == "cancelled"
    error(client.post(f"/sagemaker/executions/{execution_id}/cancel"), 409, "conflict")
    error(client.post("/sagemaker/executions/20990101T000000000000-00000000/cancel"), 404, "not_found")
    # The worker is free again: the next run goes through.
    r = client.post("/sagemaker/executions", json={"prompt": prompt(prefix="after"), "template": template})
    assert wait_execution(client, r.json()["execution_id"])["state"] == "succeeded"


def test_worker_dying_fails_the_execution(client, comfyui, tmp_path):
    import os
    import signal

    template, env, _ = publish_environment(client, prompt(wait_for="/nonexistent"), endpoint={"kind": "local"})
    assert wait_endpoint(client, env)["state"] == "InService"
    r = client.post("/sagemaker/executions", json={"prompt": prompt(prefix="die", wait_for=str(tmp_path / "n")),
                                                   "environment": env})
    execution_id = r.json()["execution_id"]
    wait_execution(client, execution_id, 60, states=("running",))
    time.sleep(0.5)  # let the prompt reach the worker's ComfyUI; the outcome does not depend on it
    state = json.loads((comfyui.user_dir / "__sagemaker" / "endpoints" / env.lower() / "state.json").read_text())
    os.killpg(state["pid"], signal.SIGKILL)
    record = wait_execution(client, execution_id, timeout=60)
    assert record["state"] == "failed" and record["error"]["message"]
    client.delete(f"/sagemaker/endpoints/{env}")


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
