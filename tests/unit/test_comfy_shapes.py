"""Refusals and failures in ComfyUI's own shapes: its validation's node errors filtered for models the
environment carries, a failure outside a node titled in the user's words (and the node the endpoint's
validation named), and a published prompt's missing node type named."""

from __future__ import annotations

import pytest
from comfyui_sagemaker.core.errors import BadRequest
from comfyui_sagemaker.core.executions import page_error
from comfyui_sagemaker.core.preflight import PromptRefused, comfy_validation
from comfyui_sagemaker.core.templates import check_prompt

MANIFEST = {"name": "E", "models": [{"name": "style.safetensors"}]}


def not_in_list(value: str) -> dict:
    return {"type": "value_not_in_list", "message": "Value not in list",
            "details": f"lora_name: '{value}' not in []", "extra_info": {"input_name": "lora_name",
                                                                           "received_value": value}}


REFUSED = {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
           "details": "", "extra_info": {}}


def test_a_valid_prompt_gives_comfyuis_outputs_and_none_when_not_validated():
    assert comfy_validation((True, None, ["3"], {}), MANIFEST) == ["3"]
    assert comfy_validation(None, MANIFEST) is None


def test_a_model_the_environment_carries_is_not_an_error():
    errors = {"2": {"errors": [not_in_list("style.safetensors")], "class_type": "SMTestScale",
                    "dependent_outputs": ["3"]}}
    assert comfy_validation((False, REFUSED, [], errors), MANIFEST) is None


def test_other_errors_stand_in_prompts_shape():
    errors = {"2": {"errors": [not_in_list("style.safetensors"), not_in_list("other.safetensors")],
                    "class_type": "SMTestScale", "dependent_outputs": ["3"]},
              "3": {"errors": [{"type": "required_input_missing", "message": "Required input is missing",
                                "details": "images", "extra_info": {"input_name": "images"}}],
                    "class_type": "SaveImage", "dependent_outputs": ["3"]}}
    with pytest.raises(PromptRefused) as refused:
        comfy_validation((False, REFUSED, [], errors), MANIFEST)
    assert refused.value.comfy_error == REFUSED
    assert [e["extra_info"]["received_value"] for e in refused.value.node_errors["2"]["errors"]] == \
        ["other.safetensors"]
    assert refused.value.node_errors["3"] == errors["3"]
    assert "SaveImage #3: Required input is missing: images" in refused.value.message


def test_a_refusal_with_no_node_at_fault_stands():
    whole = {"type": "invalid_prompt", "message": "Cannot execute because a node is missing the class_type "
             "property.", "details": "Node ID '#1'", "extra_info": {}}
    with pytest.raises(PromptRefused) as refused:
        comfy_validation((False, whole, [], {}), MANIFEST)
    assert refused.value.node_errors == {}


def test_a_failure_outside_a_node_is_titled_in_the_users_words():
    e = page_error("p", {"code": "timeout", "message": "the prompt ran over 60 s and was interrupted"})
    assert e["exception_type"] == "Run took too long" and e["node_id"] is None and e["prompt_id"] == "p"
    assert page_error("p", {})["exception_type"] == "Remote run failed"
    assert "SageMaker" not in " ".join(str(v) for v in e.values())


def test_the_endpoints_own_refusal_names_its_node():
    details = {"error": REFUSED, "node_errors": {"5": {"class_type": "KSampler", "errors": [
        {"message": "Value not in list", "details": "sampler_name: 'x' not in [...]"}]}}}
    e = page_error("p", {"code": "prompt_invalid", "message": "refused", "details": details})
    assert (e["node_id"], e["node_type"]) == ("5", "KSampler")
    assert e["exception_message"] == "Value not in list: sampler_name: 'x' not in [...]"
    assert e["exception_type"] == "Prompt refused by the endpoint"


def test_a_missing_node_type_is_named_from_the_workflow():
    workflow = {"nodes": [{"id": 2, "type": "SuperResolutionMagic"}]}
    with pytest.raises(BadRequest, match="node #2: node type SuperResolutionMagic is not installed"):
        check_prompt({"2": {"inputs": {}}}, workflow)
    with pytest.raises(BadRequest, match="node #2 has no node type"):
        check_prompt({"2": {"inputs": {}}})
