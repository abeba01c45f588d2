"""The template API through its routes in-process (harness.fake_comfy) on FakeEndpoints: a template's parameter
schema as published, runs by parameters (defaults, waiting for the outputs by name, a page that follows it),
the filled prompt for this ComfyUI, and every refusal. tests/integration/test_template_api.py keeps the
parameter nodes running on a real ComfyUI and a run by parameters on a real local endpoint, pixels checked."""

from __future__ import annotations

import base64

import pytest
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.fake_comfy import FakeComfy, publish
from harness.fake_endpoints import FakeEndpoints
from harness.images import png

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


class Templates:
    def __init__(self, tmp_path):
        self.store = FolderStore(tmp_path / "store")
        self.fake = FakeEndpoints(self.store)
        self.comfy = FakeComfy(tmp_path / "designer", self.store, self.fake)
        (self.comfy.base / "input" / "tp.png").write_bytes(png(2, 2, (10, 20, 30)))
        r = self.comfy.post("/sagemaker/templates", json={"name": "Tpl1", "workflow": template_prompt(),
                                                          "prompt": template_prompt()})
        assert r.status_code == 201, r.text
        self.fake.deploy(publish(self.store, "TplEnv", ("Tpl1",)))
        assert self.comfy.put("/sagemaker/templates/Tpl1", json={"environment": "TplEnv"}).status_code == 200
        self.fake.wait_state("TplEnv")

    def close(self) -> None:
        self.comfy.close()
        self.fake.close()


@pytest.fixture
def t(tmp_path):
    templates = Templates(tmp_path)
    yield templates
    templates.close()


def error(r, status, code):
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["code"] == code, r.text
    return body


def test_publish_stores_the_schema(t):
    schema = t.comfy.get("/sagemaker/templates/Tpl1").json()["parameters"]
    assert sorted(schema["properties"]) == ["factor", "init", "mode", "style", "width"]
    assert schema["required"] == ["width"]
    assert schema["properties"]["width"]["x-node"] == {"id": "1", "input": "default",
                                                       "class_type": "SageMakerParamInt"}
    assert schema["properties"]["mode"]["enum"] == ["normal", "multiply"]
    assert set(schema["x-outputs"]) == {"result", "inverted"}


def test_run_without_wait_is_accepted_and_defaults_apply(t):
    r = t.comfy.post("/sagemaker/templates/Tpl1/executions", json={"inputs": {"width": 6, "init": "tp.png"}})
    assert r.status_code == 202, r.text
    record = t.comfy.wait(r.json()["execution_id"])
    assert record["state"] == "succeeded", record
    sent = t.fake.invocations[-1]["prompt"]  # lowered: the values inlined where the parameter nodes were used
    assert sent["3"]["inputs"]["width"] == 6 and sent["4"]["inputs"]["factor"] == 0.5
    assert sent["6"]["inputs"]["blend_mode"] == "normal" and sent["4"]["inputs"]["lora_name"] == "style.safetensors"
    assert "tp.png" in t.fake.invocations[-1]["inputs"]


def test_run_by_parameters_with_wait_returns_the_outputs_by_name(t):
    image = base64.b64encode(png(3, 2, (0, 100, 255))).decode()
    r = t.comfy.post("/sagemaker/templates/Tpl1/executions",
                     json={"inputs": {"width": 5, "factor": 1.0, "mode": "multiply", "init": image}, "wait": 120})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["execution"]["state"] == "succeeded" and body["execution"]["template"] == "Tpl1"
    assert body["execution"]["environment"] == "TplEnv"
    assert body["outputs"]["result"] == body["execution"]["outputs"]["7"]["images"]
    assert body["outputs"]["inverted"] == body["execution"]["outputs"]["11"]["images"]
    sent = t.fake.invocations[-1]
    assert sent["prompt"]["3"]["inputs"]["width"] == 5 and sent["prompt"]["6"]["inputs"]["blend_mode"] == "multiply"
    # The base64 image is an input file by its content: in this ComfyUI's input folder, and in the store.
    (name,) = [n for n in sent["inputs"] if n.startswith("sagemaker-")]
    assert (t.comfy.base / "input" / name).read_bytes() == png(3, 2, (0, 100, 255))


def test_the_filled_prompt_for_this_comfyui_and_its_refusals(t):
    image = base64.b64encode(png(3, 2, (0, 100, 255))).decode()
    r = t.comfy.post("/sagemaker/templates/Tpl1/prompt",
                     json={"inputs": {"width": 7, "factor": 1.0, "mode": "multiply", "init": image}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["workflow"] == t.comfy.get("/sagemaker/templates/Tpl1").json()["workflow"]
    filled = body["prompt"]
    assert filled["1"]["inputs"]["default"] == 7 and filled["5"]["inputs"]["default"] == "multiply"
    assert filled["8"]["inputs"]["image"].startswith("sagemaker-")  # the base64 image, in the input folder
    assert (t.comfy.base / "input" / filled["8"]["inputs"]["image"]).is_file()
    assert filled["1"]["class_type"] == "SageMakerParamInt"  # the parameter nodes stay: they run here
    url = "/sagemaker/templates/Tpl1/prompt"
    assert error(t.comfy.post(url, json={"inputs": {"width": 65}}), 422, "invalid_inputs")["fields"] == {
        "width": "must be from 1 to 64"}
    assert "wait" in error(t.comfy.post(url, json={"inputs": {"width": 5}, "wait": 1}), 400, "bad_request")["message"]
    error(t.comfy.post("/sagemaker/templates/NoSuch1/prompt", json={"inputs": {}}), 404, "not_found")
    assert t.fake.invocations == []


def test_a_run_with_client_id_drives_that_browser(t):
    r = t.comfy.post("/sagemaker/templates/Tpl1/executions",
                     json={"inputs": {"width": 3, "init": "tp.png"}, "client_id": "page-1"})
    assert r.status_code == 202, r.text
    t.comfy.wait(r.json()["execution_id"])
    events = t.comfy.page_events("page-1", r.json()["prompt_id"])
    assert events[-1]["type"] == "execution_success", events
    executed = {e["data"]["node"]: e["data"]["output"] for e in events if e["type"] == "executed"}
    assert executed["7"]["images"][0]["subfolder"].startswith("sagemaker/")
    for bad in (7, "", "x" * 201):
        assert "client_id" in error(t.comfy.post("/sagemaker/templates/Tpl1/executions",
                                                 json={"inputs": {"width": 3}, "client_id": bad}), 400,
                                    "bad_request")["message"]


def test_invalid_inputs_are_422_with_fields(t):
    url = "/sagemaker/templates/Tpl1/executions"
    assert error(t.comfy.post(url, json={"inputs": {}}), 422, "invalid_inputs")["fields"] == {"width": "required"}
    fields = error(t.comfy.post(url, json={"inputs": {"width": "5", "factor": 2.0, "nope": 1, "mode": "x"}}), 422,
                   "invalid_inputs")["fields"]
    assert fields["width"] == "must be a whole number" and fields["factor"] == "must be from 0.0 to 1.0"
    assert fields["nope"].startswith("unknown parameter") and fields["mode"] == "must be one of normal, multiply"
    assert error(t.comfy.post(url, json={"inputs": {"width": 65}}), 422, "invalid_inputs")["fields"] == {
        "width": "must be from 1 to 64"}
    not_image = base64.b64encode(b"this is text, not pixels").decode()
    fields = error(t.comfy.post(url, json={"inputs": {"width": 5, "init": not_image}}), 422,
                   "invalid_inputs")["fields"]
    assert "not an image" in fields["init"]
    huge = base64.b64encode(png(2, 2) + b"\0" * (8 * 1024 * 1024 + 1)).decode()
    fields = error(t.comfy.post(url, json={"inputs": {"width": 5, "init": huge}}), 422, "invalid_inputs")["fields"]
    assert "over the limit" in fields["init"]
    assert "wait" in error(t.comfy.post(url, json={"inputs": {"width": 5}, "wait": -1}), 400, "bad_request")["message"]
    error(t.comfy.post("/sagemaker/templates/NoSuch1/executions", json={"inputs": {}}), 404, "not_found")
    assert t.fake.invocations == []


def test_a_template_without_parameters_run_with_inputs_is_422(t):
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}
    assert t.comfy.post("/sagemaker/templates", json={"name": "Plain1", "workflow": prompt, "prompt": prompt}
                        ).status_code == 201
    assert t.comfy.get("/sagemaker/templates/Plain1").json()["parameters"] is None
    body = error(t.comfy.post("/sagemaker/templates/Plain1/executions", json={"inputs": {"width": 3}}), 422,
                 "invalid_inputs")
    assert body["fields"] == {"width": "this template has no parameters"}


def test_publishing_bad_parameter_nodes_is_400(t):
    prompt = template_prompt()
    prompt["2"]["inputs"]["name"] = "width"
    body = error(t.comfy.post("/sagemaker/templates", json={"name": "Bad1", "workflow": prompt, "prompt": prompt}),
                 400, "invalid_parameters")
    assert "nodes 1, 2" in body["message"]
    prompt = template_prompt()
    prompt["1"]["inputs"]["default"] = 100
    assert "node 1" in error(t.comfy.post("/sagemaker/templates", json={"name": "Bad2", "workflow": prompt,
                                                                        "prompt": prompt}), 400,
                             "invalid_parameters")["message"]


def test_openapi_lists_every_route(t):
    doc = t.comfy.get("/sagemaker/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    run = doc["paths"]["/sagemaker/templates/{name}/executions"]["post"]
    assert run["summary"] and run["parameters"][0]["name"] == "name"
    assert "fields" in doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
    for path in ("/sagemaker/templates", "/sagemaker/templates/{name}/prompt", "/sagemaker/executions/{id}",
                 "/sagemaker/models/{folder}/{name}", "/sagemaker/openapi.json"):
        assert path in doc["paths"], path
    assert all(op["summary"] for ops in doc["paths"].values() for op in ops.values())
