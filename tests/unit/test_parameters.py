"""Template parameters: schema extraction, publish-time refusals, input validation, filling, lowering."""

import base64

import pytest
from comfyui_sagemaker.core import parameters as p
from comfyui_sagemaker.core.templates import TemplateService
from harness.images import png


def node(class_type, **inputs):
    return {"class_type": class_type, "inputs": inputs}


def prompt_with_every_kind():
    return {
        "1": node("SageMakerParamText", name="prompt", default="a cat", description="what to draw", max_length=20,
                  required=True),
        "2": node("SageMakerParamInt", name="width", default=64, min=8, max=512, step=8, description="",
                  required=False),
        "3": node("SageMakerParamFloat", name="cfg", default=0.5, min=0.0, max=1.0, step=0.01, description=""),
        "4": node("SageMakerParamSeed", name="seed", default=42, description=""),
        "5": node("SageMakerParamBoolean", name="hires", default=True, description=""),
        "6": node("SageMakerParamChoice", name="sampler", choices="euler, dpmpp_2m\nddim", default="euler",
                  description=""),
        "7": node("SageMakerParamImage", name="init", image="ex.png", description=""),
        "8": node("SageMakerParamLora", name="style", default="style.safetensors", description=""),
        "9": node("EmptyImage", width=["2", 0], height=64, batch_size=1, color=0),
        "10": node("SMTestScale", image=["9", 0], lora_name=["8", 0], factor=["3", 0]),
        "11": node("SageMakerTemplateOutput", images=["10", 0], name="result", description="the picture"),
        "12": node("ImageBlend", image1=["7", 0], image2=["10", 0], blend_factor=0.5, blend_mode="normal"),
    }


def test_schema_has_every_kind_with_its_limits_and_node():
    schema = p.extract(prompt_with_every_kind())
    props = schema["properties"]
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert schema["required"] == ["prompt"]
    assert props["prompt"] == {"type": "string", "default": "a cat", "description": "what to draw", "maxLength": 20,
                               "x-kind": "text",
                               "x-node": {"id": "1", "input": "default", "class_type": "SageMakerParamText"}}
    assert {k: props["width"][k] for k in ("type", "default", "minimum", "maximum", "multipleOf", "x-step")} == \
        {"type": "integer", "default": 64, "minimum": 8, "maximum": 512, "multipleOf": 8, "x-step": 8}
    assert (props["cfg"]["type"], props["cfg"]["minimum"], props["cfg"]["maximum"]) == ("number", 0.0, 1.0)
    assert "multipleOf" not in props["cfg"]
    assert (props["seed"]["type"], props["seed"]["minimum"], props["seed"]["maximum"]) == ("integer", 0, 2**64 - 1)
    assert props["seed"]["x-kind"] == "seed"
    assert (props["hires"]["type"], props["hires"]["default"]) == ("boolean", True)
    assert props["sampler"]["enum"] == ["euler", "dpmpp_2m", "ddim"]
    assert props["init"]["x-node"] == {"id": "7", "input": "image", "class_type": "SageMakerParamImage"}
    assert props["init"]["x-kind"] == "image"
    assert props["style"]["x-model-folder"] == "loras" and props["style"]["x-kind"] == "model"
    assert schema["x-outputs"] == {"result": {"node": "11", "description": "the picture"}}


def test_a_prompt_without_parameter_nodes_has_no_schema():
    assert p.extract({"1": node("EmptyImage", width=8, height=8, batch_size=1, color=0)}) is None


def refused(prompt):
    with pytest.raises(p.ParametersInvalid) as info:
        p.extract(prompt)
    assert info.value.code == "invalid_parameters"
    return info.value.message


def test_two_parameter_nodes_with_one_name_are_refused_naming_both():
    message = refused({"3": node("SageMakerParamInt", name="w", default=1, min=0, max=9, step=1),
                       "7": node("SageMakerParamFloat", name="w", default=1.0, min=0.0, max=9.0, step=0.1)})
    assert "'w'" in message and "nodes 3, 7" in message


def test_two_outputs_with_one_name_are_refused():
    assert "nodes 1, 2" in refused({"1": node("SageMakerTemplateOutput", images=["9", 0], name="out"),
                                    "2": node("SageMakerTemplateOutput", images=["9", 0], name="out")})


@pytest.mark.parametrize("name", ["", "1st", "a b", "a-b", "é", "x" * 65, "a\n", None, 3])
def test_a_name_that_is_not_an_identifier_is_refused(name):
    message = refused({"5": node("SageMakerParamBoolean", name=name, default=False)})
    assert "node 5" in message and "identifier" in message


@pytest.mark.parametrize("class_type,inputs,says", [
    ("SageMakerParamInt", {"default": 10, "min": 0, "max": 5, "step": 1}, "outside 0..5"),
    ("SageMakerParamInt", {"default": -1, "min": 0, "max": 5, "step": 1}, "outside 0..5"),
    ("SageMakerParamInt", {"default": 1, "min": 6, "max": 5, "step": 1}, "min 6 is over max 5"),
    ("SageMakerParamFloat", {"default": 1.5, "min": 0.0, "max": 1.0, "step": 0.1}, "outside 0.0..1.0"),
    ("SageMakerParamSeed", {"default": -3}, "outside 0.."),
    ("SageMakerParamText", {"default": "too long", "max_length": 3}, "over max_length 3"),
    ("SageMakerParamChoice", {"default": "c", "choices": "a, b"}, "not one of the choices"),
    ("SageMakerParamChoice", {"default": "a", "choices": " , "}, "lists no value"),
    ("SageMakerParamInt", {"default": "5", "min": 0, "max": 9, "step": 1}, "default must be a whole number"),
    ("SageMakerParamInt", {"default": ["1", 0], "min": 0, "max": 9, "step": 1}, "not a link"),
])
def test_a_default_outside_its_limits_is_refused(class_type, inputs, says):
    message = refused({"4": node(class_type, name="x", **inputs)})
    assert "node 4" in message and says in message, message


def test_every_problem_is_reported_at_once():
    message = refused({"1": node("SageMakerParamInt", name="a", default=10, min=0, max=5, step=1),
                       "2": node("SageMakerParamBoolean", name="no good", default=True)})
    assert "node 1" in message and "node 2" in message


SCHEMA = p.extract(prompt_with_every_kind())


def invalid(inputs, **kw):
    with pytest.raises(p.InputsInvalid) as info:
        p.validate_inputs(SCHEMA, inputs, **kw)
    assert info.value.code == "invalid_inputs"
    return info.value.fields


def test_valid_inputs_pass_and_images_resolve():
    data = png(3, 3)
    got = p.validate_inputs(SCHEMA, {"prompt": "a dog", "width": 128, "cfg": 1, "seed": 2**64 - 1, "hires": False,
                                     "sampler": "ddim", "init": base64.b64encode(data).decode()})
    assert got["init"] == data and got["width"] == 128
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    assert p.validate_inputs(SCHEMA, {"prompt": "x", "init": url})["init"] == data
    assert p.validate_inputs(SCHEMA, {"prompt": "x", "init": "ex.png"}, lambda n: n == "ex.png")["init"] == "ex.png"


def test_input_errors_are_per_field():
    fields = invalid({"width": "64", "cfg": True, "seed": -1, "hires": 1, "sampler": "heun", "nope": 1,
                      "prompt": "x" * 21})
    assert fields == {
        "width": "must be a whole number", "cfg": "must be a number", "seed": f"must be from 0 to {2**64 - 1}",
        "hires": "must be true or false", "sampler": "must be one of euler, dpmpp_2m, ddim",
        "nope": "unknown parameter; allowed: cfg, hires, init, prompt, sampler, seed, style, width",
        "prompt": "must be at most 20 characters",
    }


def test_missing_required_out_of_range_and_step():
    assert invalid({"width": 4}) == {"prompt": "required", "width": "must be from 8 to 512"}
    assert invalid({"prompt": "x", "width": 12}) == {"width": "must be a multiple of 8"}
    assert invalid({"prompt": "x", "cfg": 1.01}) == {"cfg": "must be from 0.0 to 1.0"}


def test_bad_images():
    assert "not an image" in invalid({"prompt": "x", "init": base64.b64encode(b"hello world").decode()})["init"]
    assert "base64" in invalid({"prompt": "x", "init": "no-such-file.png"})["init"]
    big = base64.b64encode(png(64, 64) + b"\0" * 2000).decode()
    assert "over the limit of 1000 bytes" in invalid({"prompt": "x", "init": big}, max_image_bytes=1000)["init"]


def test_inputs_to_a_template_without_parameters():
    with pytest.raises(p.InputsInvalid) as info:
        p.validate_inputs(None, {"width": 5})
    assert info.value.fields == {"width": "this template has no parameters"}
    assert p.validate_inputs(None, {}) == {}
    with pytest.raises(p.InputsInvalid):
        p.validate_inputs(SCHEMA, ["not", "an", "object"])


def test_fill_sets_the_parameter_nodes_value_and_lower_inlines_it():
    prompt = prompt_with_every_kind()
    filled = p.fill(prompt, SCHEMA, {"width": 256, "init": "in.png", "style": "other.safetensors"})
    assert prompt["2"]["inputs"]["default"] == 64  # a copy
    assert filled["2"]["inputs"]["default"] == 256 and filled["7"]["inputs"]["image"] == "in.png"
    lowered = p.lower(filled)
    assert not {"1", "2", "3", "4", "5", "6", "8"} & set(lowered)
    assert lowered["9"]["inputs"]["width"] == 256
    assert lowered["10"]["inputs"]["lora_name"] == "other.safetensors" and lowered["10"]["inputs"]["factor"] == 0.5
    assert lowered["7"] == node("LoadImage", image="in.png")
    assert lowered["11"] == node("SaveImage", images=["10", 0], filename_prefix="result")
    assert lowered["12"]["inputs"]["image1"] == ["7", 0]


def test_publishing_stores_the_schema_and_refuses_bad_parameters(store):
    templates = TemplateService(store, lambda name: False)
    t = templates.create("P1", {"nodes": []}, prompt_with_every_kind())
    assert templates.get("P1").parameters == SCHEMA == t.to_json()["parameters"]
    plain = {"1": node("EmptyImage", width=8, height=8, batch_size=1, color=0)}
    assert templates.update("P1", workflow={"nodes": []}, prompt=plain).parameters is None
    bad = {"1": node("SageMakerParamBoolean", name="x", default=True),
           "2": node("SageMakerParamBoolean", name="x", default=False)}
    with pytest.raises(p.ParametersInvalid):
        templates.create("P2", {"nodes": []}, bad)
    with pytest.raises(p.ParametersInvalid):
        templates.update("P1", workflow={"nodes": []}, prompt=bad)
    assert templates.get("P1").version == 2


def test_the_nodes_are_registered_with_conventional_names():
    from comfyui_sagemaker.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

    ours = set(p.PARAMETER_NODES) | {p.OUTPUT_NODE}
    assert ours <= set(NODE_CLASS_MAPPINGS) and set(NODE_CLASS_MAPPINGS) == set(NODE_DISPLAY_NAME_MAPPINGS)
    assert NODE_DISPLAY_NAME_MAPPINGS["SageMakerParamText"] == "Template Parameter: Text"
    for name in ours:
        cls = NODE_CLASS_MAPPINGS[name]
        assert cls.CATEGORY == "SageMaker/parameters" and cls.DESCRIPTION, name
    # Scalar nodes need no ComfyUI to describe themselves; every input has a tooltip.
    for name in p.SCALAR_KINDS:
        for spec in NODE_CLASS_MAPPINGS[name].INPUT_TYPES()["required"].values():
            assert spec[1].get("tooltip"), name
        assert NODE_CLASS_MAPPINGS[name]().value(default=7, name="x") == (7,)
