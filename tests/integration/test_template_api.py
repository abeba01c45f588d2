"""Template parameters on the real ComfyUI: the nodes run locally, a template runs by its parameters
through POST /sagemaker/templates/{name}/executions on a local endpoint or, filled by
POST /sagemaker/templates/{name}/prompt, on this ComfyUI; and the API's refusals."""

import base64
import json
import uuid

import pytest
from harness.envs import publish_environment, unique, wait_endpoint, wait_execution
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


def error(r, status, code):
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["code"] == code, r.text
    return body


@pytest.fixture(scope="module")
def target(comfyui):
    client = comfyui.client()
    client.upload_image("tp.png", png(2, 2, (10, 20, 30)))
    template, env, _ = publish_environment(client, template_prompt(), endpoint={"kind": "local"})
    try:
        assert client.put(f"/sagemaker/templates/{template}", json={"environment": env}).status_code == 200
        assert wait_endpoint(client, env)["state"] == "InService"
        yield template, env
    finally:
        client.delete(f"/sagemaker/endpoints/{env}")


def test_the_nodes_run_locally_as_ordinary_nodes(client):
    client.upload_image("tp.png", png(2, 2, (10, 20, 30)))
    entry, events = client.run(template_prompt())
    assert events[-1]["type"] == "execution_success", events
    result = entry["outputs"]["7"]["images"][0]
    assert result["filename"].startswith("result")
    close(client.view(result["filename"], result["subfolder"]), (4, 3), (100, 50, 25))
    inverted = entry["outputs"]["11"]["images"][0]
    close(client.view(inverted["filename"], inverted["subfolder"]), (2, 2), (245, 235, 225))


def test_publish_stores_the_schema(client, target):
    template, _ = target
    schema = client.get(f"/sagemaker/templates/{template}").json()["parameters"]
    assert sorted(schema["properties"]) == ["factor", "init", "mode", "style", "width"]
    assert schema["required"] == ["width"]
    assert schema["properties"]["width"]["x-node"] == {"id": "1", "input": "default",
                                                       "class_type": "SageMakerParamInt"}
    assert schema["properties"]["mode"]["enum"] == ["normal", "multiply"]
    assert set(schema["x-outputs"]) == {"result", "inverted"}


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


def test_run_without_wait_is_accepted_and_defaults_apply(client, target):
    template, _ = target
    r = client.post(f"/sagemaker/templates/{template}/executions", json={"inputs": {"width": 6, "init": "tp.png"}})
    assert r.status_code == 202, r.text
    record = wait_execution(client, r.json()["execution_id"])
    assert record["state"] == "succeeded", record
    out = record["outputs"]["7"]["images"][0]
    close(client.view(out["filename"], out["subfolder"]), (6, 3), (100, 50, 25))


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
    # The same refusals as a run.
    url = f"/sagemaker/templates/{template}/prompt"
    assert error(client.post(url, json={"inputs": {"width": 65}}), 422, "invalid_inputs")["fields"] == {
        "width": "must be from 1 to 64"}
    assert "wait" in error(client.post(url, json={"inputs": {"width": 5}, "wait": 1}), 400, "bad_request")["message"]
    error(client.post("/sagemaker/templates/NoSuch1/prompt", json={"inputs": {}}), 404, "not_found")


def test_a_run_with_client_id_drives_that_browser(client, target):
    template, _ = target
    client_id = uuid.uuid4().hex
    ws = client.websocket(client_id)
    try:
        r = client.post(f"/sagemaker/templates/{template}/executions",
                        json={"inputs": {"width": 3, "init": "tp.png"}, "client_id": client_id})
        assert r.status_code == 202, r.text
        prompt_id, events = r.json()["prompt_id"], []
        while not events or events[-1]["type"] not in ("execution_success", "execution_error"):
            msg = ws.recv()
            event = json.loads(msg) if isinstance(msg, str) else {}
            if (event.get("data") or {}).get("prompt_id") == prompt_id and not event["type"].startswith("sagemaker."):
                events.append(event)
        assert events[-1]["type"] == "execution_success", events
        executed = {e["data"]["node"]: e["data"]["output"] for e in events if e["type"] == "executed"}
        assert executed["7"]["images"][0]["subfolder"].startswith("sagemaker/")
    finally:
        ws.close()
    for bad in (7, "", "x" * 201):
        assert "client_id" in error(client.post(f"/sagemaker/templates/{template}/executions",
                                                json={"inputs": {"width": 3}, "client_id": bad}), 400,
                                    "bad_request")["message"]


def test_invalid_inputs_are_422_with_fields(client, target):
    template, _ = target
    url = f"/sagemaker/templates/{template}/executions"
    assert error(client.post(url, json={"inputs": {}}), 422, "invalid_inputs")["fields"] == {"width": "required"}
    fields = error(client.post(url, json={"inputs": {"width": "5", "factor": 2.0, "nope": 1, "mode": "x"}}), 422,
                   "invalid_inputs")["fields"]
    assert fields["width"] == "must be a whole number" and fields["factor"] == "must be from 0.0 to 1.0"
    assert fields["nope"].startswith("unknown parameter") and fields["mode"] == "must be one of normal, multiply"
    assert error(client.post(url, json={"inputs": {"width": 65}}), 422, "invalid_inputs")["fields"] == {
        "width": "must be from 1 to 64"}
    not_image = base64.b64encode(b"this is text, not pixels").decode()
    fields = error(client.post(url, json={"inputs": {"width": 5, "init": not_image}}), 422, "invalid_inputs")["fields"]
    assert "not an image" in fields["init"]
    huge = base64.b64encode(png(2, 2) + b"\0" * (8 * 1024 * 1024 + 1)).decode()
    fields = error(client.post(url, json={"inputs": {"width": 5, "init": huge}}, timeout=60), 422,
                   "invalid_inputs")["fields"]
    assert "over the limit" in fields["init"]
    assert "wait" in error(client.post(url, json={"inputs": {"width": 5}, "wait": -1}), 400, "bad_request")["message"]
    error(client.post("/sagemaker/templates/NoSuch1/executions", json={"inputs": {}}), 404, "not_found")


def test_a_template_without_parameters_run_with_inputs_is_422(client):
    name = unique("T")
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}
    assert client.post("/sagemaker/templates", json={"name": name, "workflow": prompt, "prompt": prompt}
                       ).status_code == 201
    assert client.get(f"/sagemaker/templates/{name}").json()["parameters"] is None
    body = error(client.post(f"/sagemaker/templates/{name}/executions", json={"inputs": {"width": 3}}), 422,
                 "invalid_inputs")
    assert body["fields"] == {"width": "this template has no parameters"}


def test_publishing_bad_parameter_nodes_is_400(client):
    prompt = template_prompt()
    prompt["2"]["inputs"]["name"] = "width"
    body = error(client.post("/sagemaker/templates", json={"name": unique("T"), "workflow": prompt,
                                                           "prompt": prompt}), 400, "invalid_parameters")
    assert "nodes 1, 2" in body["message"]
    prompt = template_prompt()
    prompt["1"]["inputs"]["default"] = 100
    assert "node 1" in error(client.post("/sagemaker/templates", json={"name": unique("T"), "workflow": prompt,
                                                                       "prompt": prompt}), 400,
                             "invalid_parameters")["message"]


def test_openapi_lists_every_route(client):
    doc = client.get("/sagemaker/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    run = doc["paths"]["/sagemaker/templates/{name}/executions"]["post"]
    assert run["summary"] and run["parameters"][0]["name"] == "name"
    assert "fields" in doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
    for path in ("/sagemaker/templates", "/sagemaker/templates/{name}/prompt", "/sagemaker/executions/{id}",
                 "/sagemaker/models/{folder}/{name}", "/sagemaker/openapi.json"):
        assert path in doc["paths"], path
    assert all(op["summary"] for ops in doc["paths"].values() for op in ops.values())
