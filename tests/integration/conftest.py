"""Fixtures of the integration tests that several modules share."""

from __future__ import annotations

import pytest
from harness.envs import unique, wait_endpoint, wait_job
from harness.images import png
from harness.prompts import scale_prompt

COLOR = (200, 100, 50)


def param_template():
    """A template with parameters: an image and a factor, scaled by the test pack's node."""
    return {
        "1": {"class_type": "SageMakerParamImage", "inputs": {"name": "photo", "image": "v2-seed.png",
                                                              "description": "", "required": True}},
        "2": {"class_type": "SageMakerParamFloat", "inputs": {"name": "factor", "default": 0.5, "min": 0.0,
                                                              "max": 1.0, "step": 0.01, "description": "",
                                                              "required": False}},
        "3": {"class_type": "SMTestScale", "inputs": {"image": ["1", 0], "lora_name": "style.safetensors",
                                                      "factor": ["2", 0]}},
        "4": {"class_type": "SageMakerTemplateOutput", "inputs": {"images": ["3", 0], "name": "result",
                                                                  "description": ""}},
    }


@pytest.fixture(scope="session")
def v2(comfyui):
    """An environment with two templates (a graph that can be held open, one with parameters) on a local
    endpoint; yields (ComfyUI client, environment, parameter template, base URL of its v2 surface)."""
    client = comfyui.client()
    client.upload_image("v2-seed.png", png(4, 4, COLOR))
    held, params = unique("T"), unique("P")
    graph = scale_prompt("v2-seed.png", wait_for="/nonexistent", timeout=1)
    for name, prompt in ((held, graph), (params, param_template())):
        r = client.post("/sagemaker/templates", json={"name": name, "workflow": prompt, "prompt": prompt})
        assert r.status_code == 201, r.text
    env = unique("E")
    r = client.post("/sagemaker/environments", json={"name": env, "templates": [held, params], "bind": True,
                                                     "endpoint": {"kind": "local"}})
    assert r.status_code == 202, r.text
    assert wait_job(client, r.json()["job"]["id"])["state"] == "succeeded"
    assert wait_endpoint(client, env)["state"] == "InService"
    try:
        yield client, env, params, f"{comfyui.url}/sagemaker/v2/{env}"
    finally:
        client.delete(f"/sagemaker/endpoints/{env}")


