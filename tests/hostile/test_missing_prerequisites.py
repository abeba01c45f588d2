"""A missing prerequisite never leaves a broken state: choosing SageMaker without AWS configured is refused
before anything is written; a version an older failure left can be deleted; one unavailable provider
never hides the lists."""

from __future__ import annotations

import json

import pytest
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.envs import unique, wait_task

pytestmark = pytest.mark.comfyui

PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": 4}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "pre"}}}
SAGEMAKER = {"kind": "sagemaker", "instance_type": "ml.g5.xlarge", "initial_count": 1, "mode": "async"}


def test_sagemaker_without_aws_configured_is_refused_before_anything_is_written(comfyui, client):
    template = unique("T")
    assert client.post("/sagemaker/templates", json={"name": template, "workflow": PROMPT,
                                                     "prompt": PROMPT}).status_code == 201
    env = unique("E")
    r = client.post("/sagemaker/environments", json={"name": env, "templates": [template], "endpoint": SAGEMAKER})
    assert r.status_code == 400 and r.json()["error"]["code"] == "aws_not_configured", r.text
    assert "s3" in r.json()["error"]["message"]
    store = FolderStore(comfyui.user_dir / "__sagemaker" / "store")
    assert not store.list(f"environments/{env.lower()}/")  # no claim, no version: the name is still free
    assert client.get("/sagemaker/environments").status_code == 200
    r = client.get("/sagemaker/endpoints/NoSuchEnv1")  # a missing endpoint is still just missing
    assert r.status_code == 404 and r.json()["error"]["code"] == "endpoint_not_found", r.text
    assert client.get("/sagemaker/endpoints").json()["unavailable"] == []
    # The refusal left nothing behind in this ComfyUI either: a local endpoint still deploys.
    local = unique("E")
    r = client.post("/sagemaker/environments", json={"name": local, "templates": [template],
                                                      "endpoint": {"kind": "local"}})
    assert r.status_code == 202, r.text
    try:
        task = wait_task(client, r.json()["task"]["id"])
        assert task["state"] == "succeeded", task
        assert client.get(f"/sagemaker/endpoints/{local}").status_code == 200
    finally:
        client.delete(f"/sagemaker/environments/{local}?force=true")
    assert client.delete(f"/sagemaker/templates/{template}").status_code == 204


def test_a_version_an_older_failure_left_can_be_deleted_and_lists_stay(comfyui, client):
    """An older version wrote a SageMaker environment on this folder store, then failed: the SageMaker
    provider cannot even be made here, and the environment must still list and delete."""
    store = FolderStore(comfyui.user_dir / "__sagemaker" / "store")
    env = unique("E")
    store.create(f"environments/{env.lower()}/claim.json", json.dumps({"name": env}).encode())
    store.create(f"environments/{env.lower()}/versions/v000001.json", json.dumps({
        "name": env, "version": 1, "size": 0, "created_at": "x", "custom_nodes": [], "models": [],
        "templates": [], "endpoint": SAGEMAKER}).encode())
    try:
        listed = {e["name"]: e for e in client.get("/sagemaker/environments").json()["environments"]}
        assert listed[env]["version"] == 1
        endpoints = client.get("/sagemaker/endpoints").json()
        assert "endpoints" in endpoints
        r = client.delete(f"/sagemaker/environments/{env}?force=true")
        assert r.status_code == 204, r.text
        assert env not in [e["name"] for e in client.get("/sagemaker/environments").json()["environments"]]
    finally:
        client.delete(f"/sagemaker/environments/{env}?force=true")
