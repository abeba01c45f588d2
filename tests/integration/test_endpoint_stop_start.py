"""A local endpoint's life through the routes, on one endpoint taken through its states in order: it
carries its worker's cold start (then its first prompt's model load); an environment it runs is not
deleted; a GET or another site's page stops nothing; stopped, the worker goes and the endpoint stays
(Stopped, runs refused), then comes back on the same version and runs again; a stopped endpoint is deleted.
Bad requests are refused."""

from __future__ import annotations

import uuid

import pytest
import requests
from harness.envs import publish_environment, wait_endpoint, wait_execution
from harness.waiting import wait_for

pytestmark = pytest.mark.comfyui

PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 4, "batch_size": 1, "color": 7}},
          "2": {"class_type": "SMTestScale", "inputs": {"image": ["1", 0], "lora_name": "style.safetensors",
                                                          "factor": 0.5}},
          "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "stopstart"}}}
START = ["manifest", "packs", "models", "python_packages", "comfyui_start"]  # a worker's cold start phases


def run(client, env: str) -> requests.Response:
    return client.post("/sagemaker/executions", json={"prompt": PROMPT, "environment": env,
                                                       "client_id": uuid.uuid4().hex})


@pytest.fixture(scope="module")
def env(comfyui):
    """One environment on its own local endpoint for the module (the tests below take it, in order: fresh,
    in service, stopped and started again, stopped and deleted)."""
    client = comfyui.client()
    _, name, _ = publish_environment(client, PROMPT, endpoint={"kind": "local"})
    try:
        yield name
    finally:
        client.delete(f"/sagemaker/endpoints/{name}")


def test_a_local_endpoint_carries_its_workers_cold_start(client, env):
    """The endpoint copies its worker's /status: the cold start's phases before any prompt, then the first
    prompt's model load (a SageMaker endpoint's, read from the store: test_worker_report)."""
    endpoint = wait_endpoint(client, env)
    assert endpoint["state"] == "InService", endpoint
    assert [p["name"] for p in endpoint["phases"]] == START and endpoint["activity"] is None
    assert [(c["index"], c["device"], c["state"]) for c in endpoint["comfyuis"]] == [(0, "cpu", "ready")]
    r = run(client, env)
    assert r.status_code == 202, r.text
    loaded = wait_for(lambda: [p for p in client.get(f"/sagemaker/endpoints/{env}").json()["phases"]
                               if p["name"] == "first_prompt_model_load"],
                      what="the first prompt's model load on the endpoint")
    assert loaded[0]["comfyui"] == 0
    listed = {e["name"]: e for e in client.get("/sagemaker/endpoints").json()["endpoints"]}
    assert [p["name"] for p in listed[env]["phases"]][:5] == START


def test_an_environment_an_endpoint_runs_is_not_deleted(client, env):
    assert wait_endpoint(client, env)["state"] == "InService"
    r = client.delete(f"/sagemaker/environments/{env}")
    assert r.status_code == 409 and "an endpoint runs" in r.json()["error"]["message"], r.text


def test_a_get_or_a_foreign_page_stops_nothing(client, env):
    assert wait_endpoint(client, env)["state"] == "InService"
    assert client.get(f"/sagemaker/endpoints/{env}/stop").status_code in (404, 405)
    r = client.post(f"/sagemaker/endpoints/{env}/stop", headers={"Origin": "http://evil.example"})
    assert r.status_code == 403, r.text
    assert client.get(f"/sagemaker/endpoints/{env}").json()["state"] == "InService"


def test_stop_keeps_the_endpoint_and_start_brings_it_back(client, env):
    running = wait_endpoint(client, env)
    assert running["state"] == "InService", running

    r = client.post(f"/sagemaker/endpoints/{env}/stop")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "Stopped" and r.json()["name"] == env
    with pytest.raises(requests.ConnectionError):  # the worker is gone
        requests.get(running["url"] + "/ping", timeout=30)
    assert client.get(f"/sagemaker/endpoints/{env}").json()["state"] == "Stopped"
    listed = {e["name"]: e for e in client.get("/sagemaker/endpoints").json()["endpoints"]}
    assert listed[env]["state"] == "Stopped"

    refused = run(client, env)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "endpoint_not_ready"
    assert "stopped" in refused.json()["error"]["message"]

    again = client.post(f"/sagemaker/endpoints/{env}/stop")
    assert again.status_code == 409 and again.json()["error"]["code"] == "endpoint_state", again.text
    assert "stopped already" in again.json()["error"]["message"]

    r = client.post(f"/sagemaker/endpoints/{env}/start")
    assert r.status_code == 202, r.text
    assert r.json()["state"] == "Creating"
    back = wait_endpoint(client, env)
    assert back["state"] == "InService" and back["version"] == running["version"], back

    twice = client.post(f"/sagemaker/endpoints/{env}/start")
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "endpoint_state", twice.text
    assert "running already" in twice.json()["error"]["message"]

    r = run(client, env)
    assert r.status_code == 202, r.text
    assert wait_execution(client, r.json()["execution_id"])["state"] == "succeeded"


def test_a_stopped_endpoint_can_be_deleted(client, env):
    if wait_endpoint(client, env, ("InService", "Stopped", "Failed"))["state"] != "Stopped":
        assert client.post(f"/sagemaker/endpoints/{env}/stop").status_code == 200
    assert client.delete(f"/sagemaker/endpoints/{env}").status_code == 204
    assert client.get(f"/sagemaker/endpoints/{env}").status_code == 404


def test_bad_stop_and_start_requests(comfyui, client):
    for action in ("stop", "start"):
        r = client.post(f"/sagemaker/endpoints/NoSuchEnv1/{action}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "endpoint_not_found", r.text
        # Only POST acts: a GET falls through to ComfyUI's catch-all static route, answered as our JSON 404.
        r = client.get(f"/sagemaker/endpoints/NoSuchEnv1/{action}")
        assert r.status_code in (404, 405) and r.json()["error"]["code"] in ("not_found", "method_not_allowed")
        r = client.post(f"/sagemaker/endpoints/NoSuchEnv1/{action}", headers={"Origin": "http://evil.example"})
        assert r.status_code == 403, r.text
