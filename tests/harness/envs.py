"""Publishing templates and environments through the routes, for tests that need an environment."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from .images import png
from .prompts import scale_prompt

SEED_IMAGE = "v2-seed.png"  # in the session ComfyUI's input folder, for the shared environment's templates
SEED_COLOR = (200, 100, 50)


def unique(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:8]


def wait_task(client, task_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = client.get(f"/sagemaker/tasks/{task_id}").json()
        if task["state"] != "running":
            return task
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} still running")


def publish_environment(client, prompt: dict, endpoint: dict | None = None) -> tuple[str, str, dict]:
    """A template made of `prompt` (API format also serves as its workflow), published into a new
    environment (deployed when `endpoint` is given). Returns (template name, environment name, finished task)."""
    template = unique("T")
    r = client.post("/sagemaker/templates", json={"name": template, "workflow": prompt, "prompt": prompt})
    assert r.status_code == 201, r.text
    env = unique("E")
    body = {"name": env, "templates": [template]}
    if endpoint is not None:
        body["endpoint"] = endpoint
    r = client.post("/sagemaker/environments", json=body)
    assert r.status_code == 202, r.text
    task = wait_task(client, r.json()["task"]["id"])
    assert task["state"] == "succeeded", task
    return template, env, task


def manifest_uri(comfyui, environment: str, version: int) -> str:
    """The file URI of a version's manifest in a ComfyUI's folder store (what a worker is started with)."""
    store = (comfyui.user_dir / "__sagemaker" / "store").resolve().as_uri()
    return f"{store}/environments/{environment.lower()}/versions/v{version:06d}.json"


def wait_execution(client, execution_id: str, timeout: float = 300,
                   states: tuple[str, ...] = ("succeeded", "failed", "cancelled")) -> dict:
    """Poll an execution until it is in one of `states` (by default: until it ends)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = client.get(f"/sagemaker/executions/{execution_id}").json()
        if record["state"] in states:
            return record
        time.sleep(0.05)
    raise AssertionError(f"execution {execution_id} never {' or '.join(states)}")


def wait_endpoint(client, name: str, states: tuple[str, ...] = ("InService", "Failed"), timeout: float = 300) -> dict:
    """Poll an endpoint until it reaches one of `states`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/sagemaker/endpoints/{name}")
        if r.status_code == 200 and r.json()["state"] in states:
            return r.json()
        time.sleep(0.1)
    raise AssertionError(f"endpoint {name} not in {states}: {client.get(f'/sagemaker/endpoints/{name}').text}")


def template_on(client, prompt: dict, environment: str) -> str:
    """A new template made of `prompt` (API format also serves as its workflow), bound to `environment`
    (published already, e.g. the session's shared one): its runs go to that environment's endpoint."""
    template = unique("T")
    r = client.post("/sagemaker/templates", json={"name": template, "workflow": prompt, "prompt": prompt,
                                                  "environment": environment})
    assert r.status_code == 201, r.text
    return template


def param_template() -> dict:
    """A template with parameters: an image and a factor, scaled by the test pack's node."""
    return {
        "1": {"class_type": "SageMakerParamImage", "inputs": {"name": "photo", "image": SEED_IMAGE,
                                                              "description": "", "required": True}},
        "2": {"class_type": "SageMakerParamFloat", "inputs": {"name": "factor", "default": 0.5, "min": 0.0,
                                                              "max": 1.0, "step": 0.01, "description": "",
                                                              "required": False}},
        "3": {"class_type": "SMTestScale", "inputs": {"image": ["1", 0], "lora_name": "style.safetensors",
                                                      "factor": ["2", 0]}},
        "4": {"class_type": "SageMakerTemplateOutput", "inputs": {"images": ["3", 0], "name": "result",
                                                                  "description": ""}},
    }


@dataclass(frozen=True)
class SharedEnvironment:
    name: str  # the environment, in service on a local endpoint
    held: str  # a template whose graph waits on a file that never comes (for a second)
    params: str  # a template with parameters (an image and a factor)


def publish_shared_environment(client) -> SharedEnvironment:
    """Two templates (a graph that can be held open, one with parameters) published, bound, into a new
    environment on a local endpoint; returns once the endpoint is in service."""
    client.upload_image(SEED_IMAGE, png(4, 4, SEED_COLOR))
    held, params = unique("T"), unique("P")
    graph = scale_prompt(SEED_IMAGE, wait_for="/nonexistent", timeout=1)
    for name, prompt in ((held, graph), (params, param_template())):
        r = client.post("/sagemaker/templates", json={"name": name, "workflow": prompt, "prompt": prompt})
        assert r.status_code == 201, r.text
    env = unique("E")
    r = client.post("/sagemaker/environments", json={"name": env, "templates": [held, params], "bind": True,
                                                     "endpoint": {"kind": "local"}})
    assert r.status_code == 202, r.text
    task = wait_task(client, r.json()["task"]["id"])
    assert task["state"] == "succeeded" and task["phase"] == "done", task
    endpoint = wait_endpoint(client, env)
    assert endpoint["state"] == "InService", endpoint
    return SharedEnvironment(env, held, params)
