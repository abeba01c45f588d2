"""Template parameters on the real ComfyUI, end to end: the nodes run locally, a template runs by its
parameters through POST /sagemaker/templates/{name}/executions on a real local endpoint or, filled by
POST /sagemaker/templates/{name}/prompt, on this ComfyUI; pixels checked. The API's logic (the schema, defaults,
waiting, a page that follows a run, every refusal, the OpenAPI document) is
tests/unit/test_template_executions_api.py's, in-process on FakeEndpoints. The run shares the session's v2
environment and its local endpoint (tests/integration/conftest.py): no endpoint of its own to start."""

import base64

import pytest
from harness.envs import unique
from harness.images import pixels, png

pytestmark = pytest.mark.comfyui

COLOR = (200 << 16) | (100 << 8) | 50


def template_prompt(image="tp.png"):
    return {
        "1": {"class_type": "SageMakerParamInt", "inputs": {"name": "width", "default": 4, "min": 1, "max": 64,
                                                            "step": 1, "description": "image width",
                                                            "required": True}},
        "2": {"class_type": "SageMakerParamFloat", "inputs": {"name": "factor", "default": 0.5, "min": 0.0,
                                                              "max": 1.0, "step": 0.01, "description": "",
                                                              "required": False}},
        "3": {"class_type": "EmptyImage", "inputs": {"width": ["1", 0], "height": 3, "batch_size": 1,
                                                     "color": COLOR}},
        "4": {"class_type": "SMTestScale", "inputs": {"image": ["3", 0], "lora_name": ["9", 0], "factor": ["2", 0]}},
        "5": {"class_type": "SageMakerParamChoice", "inputs": {"name": "mode", "choices": "normal, multiply",
                                                               "default": "normal", "description": "",
                                                               "required": False}},
        "6": {"class_type": "ImageBlend", "inputs": {"image1": ["4", 0], "image2": ["4", 0], "blend_factor": 1.0,
                                                     "blend_mode": ["5", 0]}},
        "7": {"class_type": "SageMakerTemplateOutput", "inputs": {"images": ["6", 0], "name": "result",
                                                                  "description": "the scaled image"}},
        "8": {"class_type": "SageMakerParamImage", "inputs": {"name": "init", "image": image, "description": "",
                                                              "required": False}},
        "9": {"class_type": "SageMakerParamLora", "inputs": {"name": "style", "default": "style.safetensors",
                                                             "description": "", "required": False}},
        "10": {"class_type": "ImageInvert", "inputs": {"image": ["8", 0]}},
        "11": {"class_type": "SageMakerTemplateOutput", "inputs": {"images": ["10", 0], "name": "inverted",
                                                                   "description": ""}},
    }


def close(data, size, color, tolerance=2):
    from io import BytesIO

    from PIL import Image

    assert Image.open(BytesIO(data)).size == size
    assert all(abs(a - b) <= tolerance for px in pixels(data) for a, b in zip(px, color, strict=True)), pixels(data)


@pytest.fixture(scope="module")
def target(v2):
    """This module's template, bound to the shared environment (it has the test pack and the lora)."""
    client, env, _, _ = v2
    client.upload_image("tp.png", png(2, 2, (10, 20, 30)))
    template = unique("T")
    r = client.post("/sagemaker/templates", json={"name": template, "workflow": template_prompt(),
                                                  "prompt": template_prompt()})
    assert r.status_code == 201, r.text
    assert client.put(f"/sagemaker/templates/{template}", json={"environment": env}).status_code == 200
    return template, env


def test_the_nodes_run_locally_as_ordinary_nodes(client):
    client.upload_image("tp.png", png(2, 2, (10, 20, 30)))
    entry, events = client.run(template_prompt())
    assert events[-1]["type"] == "execution_success", events
    result = entry["outputs"]["7"]["images"][0]
    assert result["filename"].startswith("result")
    close(client.view(result["filename"], result["subfolder"]), (4, 3), (100, 50, 25))
    inverted = entry["outputs"]["11"]["images"][0]
    close(client.view(inverted["filename"], inverted["subfolder"]), (2, 2), (245, 235, 225))


def test_run_by_parameters_with_wait_returns_the_outputs(client, target):
    template, env = target
    image = base64.b64encode(png(3, 2, (0, 100, 255))).decode()
    r = client.post(f"/sagemaker/templates/{template}/executions",
                    json={"inputs": {"width": 5, "factor": 1.0, "mode": "multiply", "init": image}, "wait": 120},
                    timeout=150)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["execution"]["state"] == "succeeded", body
    assert body["execution"]["template"] == template and body["execution"]["environment"] == env
    result = body["outputs"]["result"][0]
    close(client.view(result["filename"], result["subfolder"]), (5, 3), (157, 39, 10))
    inverted = body["outputs"]["inverted"][0]
    close(client.view(inverted["filename"], inverted["subfolder"]), (3, 2), (255, 155, 0))
    assert result == body["execution"]["outputs"]["7"]["images"][0]


def test_the_filled_prompt_runs_on_this_comfyui(client, target):
    template, _ = target
    image = base64.b64encode(png(3, 2, (0, 100, 255))).decode()
    r = client.post(f"/sagemaker/templates/{template}/prompt",
                    json={"inputs": {"width": 7, "factor": 1.0, "mode": "multiply", "init": image}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["workflow"] == client.get(f"/sagemaker/templates/{template}").json()["workflow"]
    filled = body["prompt"]
    assert filled["1"]["inputs"]["default"] == 7 and filled["5"]["inputs"]["default"] == "multiply"
    assert filled["8"]["inputs"]["image"].startswith("sagemaker-")  # the base64 image, in the input folder
    assert filled["1"]["class_type"] == "SageMakerParamInt"  # the parameter nodes stay: they run here
    entry, events = client.run(filled)
    assert events[-1]["type"] == "execution_success", events
    result = entry["outputs"]["7"]["images"][0]
    close(client.view(result["filename"], result["subfolder"]), (7, 3), (157, 39, 10))
    inverted = entry["outputs"]["11"]["images"][0]
    close(client.view(inverted["filename"], inverted["subfolder"]), (3, 2), (255, 155, 0))
