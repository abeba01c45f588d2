"""Local endpoints: a worker subprocess per environment, deployed by publishing, observed by routes."""

import json
import os
import signal
import threading

import pytest
import requests
from comfyui_sagemaker.core.endpoints import InvocationFailed
from comfyui_sagemaker.local.endpoints import WORKER_ARGS, LocalEndpoints, WorkerRuntime
from harness.comfyui import ComfyUI
from harness.envs import publish_environment, wait_endpoint
from harness.fixtures import install_test_models, install_test_pack

pytestmark = pytest.mark.comfyui

PROMPT = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 4, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SMTestScale", "inputs": {"image": ["1", 0], "lora_name": "style.safetensors",
                                                    "factor": 0.5}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "le"}},
}



def local_endpoints(comfyui):
    """The same local endpoints, seen from the test process (for invoke)."""
    from harness.comfyui import ROOT, comfyui_dir

    state = comfyui.user_dir / "__sagemaker"
    return LocalEndpoints(state, (state / "store").resolve().as_uri(),
                          WorkerRuntime(comfyui_dir(), "--cpu", ROOT))


@pytest.fixture(scope="module")
def deployed(comfyui, local_environment):
    """The session's environment, deployed on a local endpoint when it was published (tests/conftest.py)."""
    env = local_environment.name
    return env, wait_endpoint(comfyui.client(), env)


def test_publish_deploys_an_endpoint_in_service(comfyui, client, deployed):
    env, endpoint = deployed
    assert endpoint["kind"] == "local" and endpoint["version"] == 1 and endpoint["url"].startswith("http://127.0.0.1:")
    assert requests.get(endpoint["url"] + "/ping", timeout=30).status_code == 200
    assert env in [e["name"] for e in client.get("/sagemaker/endpoints").json()["endpoints"]]
    listed = {e["name"]: e for e in client.get("/sagemaker/environments").json()["environments"]}
    assert listed[env]["endpoint_state"] == "InService"
    # The worker's own log (filtered: the session's endpoint has run long, its start is past the default tail).
    logs = client.get(f"/sagemaker/endpoints/{env}/logs", params={"contains": "worker ready"}).json()["logs"]
    assert "worker ready" in logs
    # An environment an endpoint runs is not deleted: tests/integration/test_endpoint_stop_start.py (this
    # one is refused first for the templates bound to it).


def test_invoke_through_the_endpoint_pixels_checked(comfyui, deployed):
    env, _ = deployed
    events = []
    result = local_endpoints(comfyui).invoke(env, {"execution_id": "x", "prompt": PROMPT}, events.append)
    assert result["status"] == "succeeded"
    assert [e["type"] for e in events][-1] == "execution_success"
    digest = result["outputs"]["3"]["images"][0]["sha256"]
    blob = comfyui.user_dir / "__sagemaker" / "store" / "blobs" / "sha256" / digest
    from harness.images import pixels

    assert all(px == (0, 0, 0) for px in pixels(blob.read_bytes()))


def test_worker_killed_mid_invocation_fails_the_call_and_the_endpoint(comfyui, client, tmp_path):
    _, env, _ = publish_environment(client, PROMPT, endpoint={"kind": "local"})
    assert wait_endpoint(client, env)["state"] == "InService"
    signal_file = tmp_path / "never"
    held = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": 1}},
        "2": {"class_type": "SMTestWait", "inputs": {"image": ["1", 0], "signal": str(signal_file), "timeout": 120}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "held"}},
    }
    started = threading.Event()
    outcome = {}

    def on_event(event):
        if event["type"] == "executing" and event["data"].get("node") == "2":
            started.set()

    def call():
        try:
            outcome["result"] = local_endpoints(comfyui).invoke(env, {"prompt": held}, on_event)
        except InvocationFailed as err:
            outcome["error"] = err

    t = threading.Thread(target=call)
    t.start()
    assert started.wait(180)
    state = json.loads((comfyui.user_dir / "__sagemaker" / "endpoints" / env.lower() / "state.json").read_text())
    os.killpg(state["pid"], signal.SIGKILL)
    t.join(180)
    assert not t.is_alive() and "error" in outcome, outcome
    failed = wait_endpoint(client, env, ("Failed",))
    assert "worker exited" in failed["reason"]
    assert client.delete(f"/sagemaker/endpoints/{env}").status_code == 204
    assert client.get(f"/sagemaker/endpoints/{env}").status_code == 404


def test_missing_blob_makes_the_endpoint_failed_with_the_reason(comfyui, client):
    prompt = {**PROMPT, "2": {**PROMPT["2"], "inputs": {**PROMPT["2"]["inputs"], "lora_name": "shared.safetensors"}}}
    _, env, _ = publish_environment(client, prompt)
    manifest = client.get(f"/sagemaker/environments/{env}").json()
    blobs = comfyui.user_dir / "__sagemaker" / "store" / "blobs" / "sha256"
    lora = next(m for m in manifest["models"] if m["folder"] == "loras")
    moved = blobs / lora["sha256"]
    data = moved.read_bytes()
    moved.unlink()
    cache = comfyui.user_dir / "__sagemaker" / "worker-cache" / "blobs" / "sha256" / lora["sha256"]
    cache.unlink(missing_ok=True)
    try:
        r = client.post("/sagemaker/endpoints", json={"environment": env})
        assert r.status_code == 202 and r.json()["state"] == "Creating"
        failed = wait_endpoint(client, env)
        assert failed["state"] == "Failed" and "missing from the store" in failed["reason"]
    finally:
        moved.write_bytes(data)
        client.delete(f"/sagemaker/endpoints/{env}")


def test_bad_endpoint_requests(client):
    assert client.post("/sagemaker/endpoints", json={"environment": "NoSuchEnv1"}).status_code == 404
    assert client.post("/sagemaker/endpoints", json={}).status_code == 400
    r = client.get("/sagemaker/endpoints/NoSuchEnv1")
    assert r.status_code == 404 and r.json()["error"]["code"] == "endpoint_not_found"
    assert client.delete("/sagemaker/endpoints/NoSuchEnv1").status_code == 404


def test_endpoints_are_re_adopted_when_comfyui_restarts(tmp_path):
    base = tmp_path / "base"
    install_test_pack(base)
    install_test_models(base)
    server = ComfyUI(base).start()
    try:
        client = server.client()
        _, env, _ = publish_environment(client, PROMPT, endpoint={"kind": "local"})
        before = wait_endpoint(client, env)
        server.stop(endpoints=False)  # the worker keeps running
        server = ComfyUI(base).start()
        after = wait_endpoint(server.client(), env, ("InService",))
        assert after["url"] == before["url"]  # the same worker, adopted
        assert requests.get(after["url"] + "/ping", timeout=30).status_code == 200
    finally:
        server.stop()


def test_dockerfile_runs_the_same_worker_command_as_local_endpoints():
    from harness.comfyui import ROOT

    text = (ROOT / "worker" / "Dockerfile").read_text()
    directives = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and not line.startswith(" ") and " " in line:
            key, value = line.split(" ", 1)
            directives.setdefault(key, []).append(value)
    entrypoint = json.loads(directives["ENTRYPOINT"][-1])
    cmd = json.loads(directives["CMD"][-1])
    # The image runs the installed package's CLI, local endpoints the extension folder's: the same command.
    assert entrypoint[:3] == ["python", "-m", "comfyui_sagemaker"] and tuple(entrypoint[3:] + cmd) == WORKER_ARGS
    assert any("com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true" in v for v in directives["LABEL"])
    assert directives["FROM"][0] == "${BASE}"  # the base: tests/unit/test_worker_dockerfile.py
