"""Environment routes on the real ComfyUI: templates -> analysis -> publish task -> manifest."""

import hashlib
import uuid

import pytest
from harness.envs import wait_task
from harness.fixtures import TEST_MODELS, TEST_PACK

pytestmark = pytest.mark.comfyui

PROMPT = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}},
    "2": {"class_type": "SMTestScale", "inputs": {"image": ["1", 0], "lora_name": "style.safetensors", "factor": 0.5}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "env"}},
}


def unique(prefix="E"):
    return prefix + uuid.uuid4().hex[:8]


def template(client, prompt=PROMPT, workflow=None):
    name = unique("T")
    r = client.post("/sagemaker/templates", json={"name": name, "workflow": workflow or {"nodes": []},
                                                  "prompt": prompt})
    assert r.status_code == 201, r.text
    return name


def publish(client, name, **body):
    r = client.post("/sagemaker/environments", json={"name": name, **body})
    return r


def analyze_prompt(prompt):
    return {"workflow": prompt}


def test_publish_from_templates_lists_and_versions(client, comfyui):
    t = template(client, workflow=PROMPT)  # API format works as a template's workflow for analysis too
    env = unique()
    r = publish(client, env, templates=[t])
    assert r.status_code == 202, r.text
    task = wait_task(client, r.json()["task"]["id"])
    assert task["state"] == "succeeded", task
    assert task["bytes_done"] == task["bytes_total"] and task["files_done"] == task["files_total"]
    manifest = client.get(f"/sagemaker/environments/{env}").json()
    assert manifest["version"] == 1 and manifest["templates"] == [t]
    assert [p["folder"] for p in manifest["custom_nodes"]] == [TEST_PACK]
    assert manifest["custom_nodes"][0]["identity"]["kind"] == "git"
    data = TEST_MODELS["loras"]["style.safetensors"]
    assert manifest["models"] == [{"folder": "loras", "name": "style.safetensors", "size": len(data),
                                   "sha256": hashlib.sha256(data).hexdigest()}]
    assert manifest["endpoint"] is None  # published without an endpoint config: nothing deployed
    blob = comfyui.user_dir / "__sagemaker" / "store" / "blobs" / "sha256" / hashlib.sha256(data).hexdigest()
    assert blob.read_bytes() == data
    listed = {e["name"]: e for e in client.get("/sagemaker/environments").json()["environments"]}
    assert listed[env]["version"] == 1 and listed[env]["models"] == 1 and listed[env]["packs"] == 1

    # Bind the template, then publish by binding alone: version 2, nothing new written.
    assert client.put(f"/sagemaker/templates/{t}", json={"environment": env}).status_code == 200
    task = wait_task(client, publish(client, env).json()["task"]["id"])
    assert task["result"]["version"] == 2 and task["result"]["bytes_written"] == 0
    assert client.get(f"/sagemaker/environments/{env}?version=1").json()["version"] == 1
    r = client.get(f"/sagemaker/environments/{env}?version=9")
    assert r.status_code == 404 and r.json()["error"]["code"] == "environment_not_found"

    diff = client.get(f"/sagemaker/environments/{env}/diff").json()
    assert diff["packs"]["changed"] == [] and TEST_PACK not in diff["packs"]["added"]
    assert "loras/style.safetensors" not in diff["models"]["missing_here"]
    assert "checkpoints/tiny.safetensors" in diff["models"]["missing_there"]

    r = client.delete(f"/sagemaker/environments/{env}")
    assert r.status_code == 409 and t in r.json()["error"]["message"]
    assert client.delete(f"/sagemaker/environments/{env}?force=true").status_code == 204
    assert client.get(f"/sagemaker/environments/{env}").status_code == 404


def test_name_differing_in_case_is_409(client):
    t = template(client)
    env = unique("Ab")
    wait_task(client, publish(client, env, templates=[t]).json()["task"]["id"])
    r = publish(client, env.lower(), templates=[t])
    assert r.status_code == 409 and r.json()["error"]["code"] == "environment_exists"


@pytest.mark.parametrize("endpoint, needle", [
    ({"kind": "sagemaker", "instance_type": "ml.g4dn.xlarge", "initial_count": 0}, "at least 1"),
    ({"kind": "sagemaker", "autoscaling": {"min": 2, "max": 1}}, "over max"),
    ({"kind": "sagemaker", "autoscaling": {"min": 1, "max": 99}}, "cap"),
    ({"kind": "sagemaker", "mode": "realtime", "autoscaling": {"min": 0, "max": 1}}, "only for async"),
    ({"kind": "nope"}, "kind"),
    ({"kind": "local", "extra": 1}, "unknown endpoint fields"),
])
def test_bad_endpoint_configs_are_400(client, endpoint, needle):
    r = client.post("/sagemaker/environments", json={"name": unique(), "templates": [], "endpoint": endpoint})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_endpoint_config"
    assert needle in r.json()["error"]["message"]


@pytest.mark.parametrize("body, code, needle", [
    ({"name": "bad name"}, "invalid_name", "not allowed"),
    ({"name": "Ok1", "surprise": 1}, "bad_request", "unknown fields"),
    ({"name": "Ok1", "include": "some"}, "bad_request", "include"),
    ({"name": "Ok1", "templates": "x"}, "bad_request", "list"),
    ({"name": "Ok1", "templates": [], "bind": "yes"}, "bad_request", "bind must be true or false"),
])
def test_bad_publish_bodies(client, body, code, needle):
    r = client.post("/sagemaker/environments", json=body)
    assert r.status_code == 400 and r.json()["error"]["code"] == code and needle in r.json()["error"]["message"]


def test_no_templates_is_400_saying_so(client):
    r = publish(client, unique())
    assert r.status_code == 400 and "no templates" in r.json()["error"]["message"]


def test_template_needing_a_missing_model_is_400_naming_it(client):
    wf = {"nodes": [{"id": 1, "type": "SMTestScale", "widgets_values": ["style.safetensors", 0.5],
                     "properties": {"models": [{"name": "gone.safetensors", "directory": "checkpoints"}]}}]}
    t = template(client, workflow=wf)
    r = publish(client, unique(), templates=[t])
    assert r.status_code == 400 and "checkpoints/gone.safetensors" in r.json()["error"]["message"]


def test_template_needing_a_missing_node_is_400_naming_it(client):
    t = template(client, workflow={"1": {"class_type": "NotInstalledNode", "inputs": {}}})
    r = publish(client, unique(), templates=[t])
    assert r.status_code == 400 and "NotInstalledNode" in r.json()["error"]["message"]


def test_unknown_template_and_job(client):
    r = publish(client, unique(), templates=["NoSuchTemplate"])
    assert r.status_code == 404
    assert client.get("/sagemaker/tasks/nope").status_code == 404
    assert client.post("/sagemaker/tasks/nope/cancel").status_code == 404


def test_publishing_with_bind_binds_the_templates_it_includes(client):
    first, second = template(client, workflow=PROMPT), template(client, workflow=PROMPT)
    env = unique()
    r = publish(client, env, templates=[first, second], bind=True)
    assert r.status_code == 202, r.text
    task = wait_task(client, r.json()["task"]["id"])
    assert task["state"] == "succeeded" and sorted(task["result"]["bound"]) == sorted([first, second]), task
    for name in (first, second):
        assert client.get(f"/sagemaker/templates/{name}").json()["environment"] == env
    unbound = template(client, workflow=PROMPT)
    r = publish(client, unique(), templates=[unbound])
    assert wait_task(client, r.json()["task"]["id"])["state"] == "succeeded"
    assert client.get(f"/sagemaker/templates/{unbound}").json()["environment"] is None  # bind is asked for
