"""Publishing templates and environments through the routes, for tests that need an environment."""

from __future__ import annotations

import time
import uuid


def unique(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:8]


def wait_job(client, job_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/sagemaker/jobs/{job_id}").json()
        if job["state"] != "running":
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still running")


def publish_environment(client, prompt: dict, endpoint: dict | None = None) -> tuple[str, str, dict]:
    """A template made of `prompt` (API format also serves as its workflow), published into a new
    environment (deployed when `endpoint` is given). Returns (template name, environment name, finished job)."""
    template = unique("T")
    r = client.post("/sagemaker/templates", json={"name": template, "workflow": prompt, "prompt": prompt})
    assert r.status_code == 201, r.text
    env = unique("E")
    body = {"name": env, "templates": [template]}
    if endpoint is not None:
        body["endpoint"] = endpoint
    r = client.post("/sagemaker/environments", json=body)
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["job"]["id"])
    assert job["state"] == "succeeded", job
    return template, env, job


def wait_execution(client, execution_id: str, timeout: float = 120,
                   states: tuple[str, ...] = ("succeeded", "failed", "cancelled")) -> dict:
    """Poll an execution until it is in one of `states` (by default: until it ends)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = client.get(f"/sagemaker/executions/{execution_id}").json()
        if record["state"] in states:
            return record
        time.sleep(0.05)
    raise AssertionError(f"execution {execution_id} never {' or '.join(states)}")


def wait_endpoint(client, name: str, states: tuple[str, ...] = ("InService", "Failed"), timeout: float = 180) -> dict:
    """Poll an endpoint until it reaches one of `states`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/sagemaker/endpoints/{name}")
        if r.status_code == 200 and r.json()["state"] in states:
            return r.json()
        time.sleep(0.1)
    raise AssertionError(f"endpoint {name} not in {states}: {client.get(f'/sagemaker/endpoints/{name}').text}")
