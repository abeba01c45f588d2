"""A parameter wired to an input accepts only what that input accepts (ComfyUI's /object_info limits):
publishing narrows it to the intersection and says so in a warning (201, not 400: the template runs every
value it now accepts; an empty intersection, where nothing could run, is refused). The form and the API
then check values against the narrowed limits."""

from __future__ import annotations

import pytest
from comfyui_sagemaker.core import parameter_limits as limits
from comfyui_sagemaker.core import parameters as p
from comfyui_sagemaker.core.analysis import NodeInfo, input_specs
from comfyui_sagemaker.core.templates import Template, TemplateService
from comfyui_sagemaker.local.folder_store import FolderStore

# What ComfyUI's /object_info says of the inputs these tests wire parameters to.
OBJECT_INFO = {
    "ImageBlur": {"image": ("IMAGE",), "blur_radius": ("INT", {"default": 1, "min": 1, "max": 31, "step": 1}),
                  "sigma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1})},
    "ImageBlend": {"image1": ("IMAGE",), "image2": ("IMAGE",),
                   "blend_mode": (["normal", "multiply", "screen", "overlay", "soft_light", "difference"],)},
}


def node_info(node_type: str) -> NodeInfo | None:
    found = OBJECT_INFO.get(node_type)
    return NodeInfo("core", input_specs({"required": found})) if found else None


def blur_prompt(lo=0, hi=100, default=5, choices="normal, multiply, dodge", mode="normal") -> dict:
    return {
        "1": {"class_type": "SageMakerParamInt", "inputs": {"name": "radius", "default": default, "min": lo,
                                                            "max": hi, "step": 1, "description": "",
                                                            "required": False}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "x.png"}},
        "3": {"class_type": "ImageBlur", "inputs": {"image": ["2", 0], "blur_radius": ["1", 0], "sigma": 1.0}},
        "4": {"class_type": "SageMakerParamChoice", "inputs": {"name": "mode", "choices": choices,
                                                               "default": mode, "description": "",
                                                               "required": False}},
        "5": {"class_type": "ImageBlend", "inputs": {"image1": ["3", 0], "image2": ["3", 0], "blend_mode": ["4", 0]}},
        "6": {"class_type": "SageMakerTemplateOutput", "inputs": {"images": ["5", 0], "name": "out",
                                                                  "description": ""}},
    }


@pytest.fixture
def templates(tmp_path):
    return TemplateService(FolderStore(tmp_path), lambda name: False, node_info=node_info)


def test_input_specs_keep_comfyuis_numeric_limits():
    specs = {s.name: s for s in input_specs({"required": OBJECT_INFO["ImageBlur"]})}
    assert (specs["blur_radius"].minimum, specs["blur_radius"].maximum) == (1, 31)
    assert (specs["sigma"].minimum, specs["sigma"].maximum) == (0.1, 10.0)
    assert specs["image"].minimum is None


def test_a_range_wider_than_its_input_is_narrowed_with_a_warning_and_the_api_refuses_beyond(templates):
    t = templates.create("Blur", {"nodes": []}, blur_prompt())
    radius = t.parameters["properties"]["radius"]
    assert (radius["minimum"], radius["maximum"]) == (1, 31)
    assert radius["x-declared"] == {"minimum": 0, "maximum": 100}  # what the designer wrote, kept
    assert t.warnings[0] == ("parameter radius: its range 0 to 100 exceeds what ImageBlur's blur_radius (node #3) "
                             "accepts (1 to 31); the form and the API accept 1 to 31")
    assert t.to_json()["warnings"] == t.warnings and templates.get("Blur").warnings == t.warnings
    with pytest.raises(p.InputsInvalid) as refused:
        p.validate_inputs(t.parameters, {"radius": 40})
    assert refused.value.fields == {"radius": "must be from 1 to 31"}
    assert p.validate_inputs(t.parameters, {"radius": 31}) == {"radius": 31}


def test_choices_the_input_does_not_offer_are_dropped_with_a_warning(templates):
    t = templates.create("Blend", {"nodes": []}, blur_prompt())
    mode = t.parameters["properties"]["mode"]
    assert mode["enum"] == ["normal", "multiply"] and mode["x-declared"] == {"enum": ["normal", "multiply", "dodge"]}
    assert any("ImageBlend's blend_mode (node #5) does not accept dodge" in w for w in t.warnings)


def test_a_parameter_within_its_inputs_publishes_without_warnings(templates):
    t = templates.create("Fits", {"nodes": []}, blur_prompt(lo=1, hi=31, choices="normal, screen"))
    assert t.warnings == [] and "x-declared" not in t.parameters["properties"]["radius"]
    # Republished wider, the update says it too.
    assert templates.update("Fits", workflow={"nodes": []}, prompt=blur_prompt()).warnings != []


def test_no_value_in_common_is_refused_and_a_default_outside_is_warned(templates):
    with pytest.raises(p.ParametersInvalid) as refused:
        templates.create("Never", {"nodes": []}, blur_prompt(lo=40, hi=100, default=50))
    assert "parameter radius: its range 40 to 100 and what ImageBlur's blur_radius (node #3) accepts (1 to 31) " \
           "have no value in common" in refused.value.message
    with pytest.raises(p.ParametersInvalid) as refused:
        templates.create("Never", {"nodes": []}, blur_prompt(choices="dodge, burn", mode="dodge"))
    assert "parameter mode: none of its choices is one ImageBlend's blend_mode (node #5) accepts" \
        in refused.value.message
    t = templates.create("Outside", {"nodes": []}, blur_prompt(default=0))
    assert any("its default 0 is outside that range" in w for w in t.warnings)


def test_without_a_node_registry_nothing_is_narrowed(tmp_path):
    t = TemplateService(FolderStore(tmp_path), lambda name: False).create("Blur", {"nodes": []}, blur_prompt())
    assert t.parameters["properties"]["radius"]["maximum"] == 100 and t.warnings == []
    assert limits.wired_inputs(blur_prompt(), "1") == [("3", "blur_radius", "ImageBlur")]


def test_a_template_written_before_warnings_reads_with_none():
    t = Template("Old", {"nodes": []}, blur_prompt(), None, 1, "t", "t", None)
    raw = t.to_bytes().replace(b',"warnings":[]', b"")
    assert b"warnings" not in raw and Template.from_bytes(raw).warnings == []
