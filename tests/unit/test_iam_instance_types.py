"""The designer policy's `sagemaker:InstanceTypes` condition on CreateEndpointConfig (issue 29): a designer's
credentials create endpoint configs only on the configuration's allowed_instance_types. moto does not evaluate
this key, so AWS's documented semantics are held against the policy text (tests/harness/iam_semantics.py):
Service Authorization Reference, Amazon SageMaker AI: CreateEndpointConfig takes sagemaker:InstanceTypes, an
ArrayOfString (every variant's type); IAM User Guide, "Set operators for multivalued context keys":
ForAllValues is true for an absent key, hence the Null condition beside it."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest
from comfyui_sagemaker.aws import setup, stack
from comfyui_sagemaker.aws.setup import SetupError
from comfyui_sagemaker.core import instance_allowlist
from harness.iam_semantics import allows, hand_policy, stack_policy

CREATE = "sagemaker:CreateEndpointConfig"
CONFIG_ARN = "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/cs-portraits-abc-v1"


def _sar_sagemaker() -> dict:
    files = importlib.metadata.files("parliament") or []
    path = next(Path(str(f.locate())) for f in files if str(f).endswith("iam_definition.json"))
    return next(s for s in json.loads(path.read_text()) if s["prefix"] == "sagemaker")


def test_the_key_is_one_create_endpoint_config_takes_and_it_is_multivalued():
    sar = _sar_sagemaker()
    privilege = next(p for p in sar["privileges"] if p["privilege"] == "CreateEndpointConfig")
    assert any("sagemaker:InstanceTypes" in r["condition_keys"] for r in privilege["resource_types"])
    key = next(c for c in sar["conditions"] if c["condition"] == "sagemaker:InstanceTypes")
    assert key["type"] == "ArrayOfString"  # so ForAllValues, not a plain StringLike


@pytest.mark.parametrize("policy", [stack_policy("designer"), stack_policy("designer", kms=True),
                                    hand_policy("designer")], ids=["stack", "stack-kms", "by-hand"])
@pytest.mark.parametrize("types, allowed", [
    (["ml.g5.xlarge"], True), (["ml.p4d.24xlarge"], True), (["ml.g6e.2xlarge", "ml.g5.xlarge"], True),
    (["ml.m5.xlarge"], False), (["ml.g5.xlarge", "ml.m5.xlarge"], False), (["ml.p2.xlarge"], False),
    (["ml.inf2.xlarge"], False), (None, False),  # no instance type at all (a serverless config): refused
])
def test_the_designer_creates_endpoint_configs_only_on_allowed_types(policy, types, allowed):
    context = {} if types is None else {"sagemaker:InstanceTypes": types}
    assert allows(policy, CREATE, CONFIG_ARN, context) is allowed


def test_the_policys_list_is_the_configurations_default_list():
    doc = json.loads((stack.IAM / "designer-policy.json").read_text())
    statement = next(s for s in doc["Statement"] if s.get("Sid") == stack.INSTANCE_TYPES_SID)
    assert statement["Condition"]["ForAllValues:StringLike"]["sagemaker:InstanceTypes"] == list(
        instance_allowlist.DEFAULT)
    assert stack.template()["Parameters"]["AllowedInstanceTypes"]["Default"] == ",".join(instance_allowlist.DEFAULT)
    others = [s for s in doc["Statement"] if s.get("Sid") != stack.INSTANCE_TYPES_SID]
    assert not any(CREATE in s["Action"] for s in others), "granted unconditionally elsewhere"


def test_the_stack_puts_its_parameter_in_the_condition_and_hands_the_list_to_the_configuration():
    statements = stack.policy_document("designer")["Statement"]["Fn::If"][2]
    statement = next(s for s in statements if s.get("Sid") == stack.INSTANCE_TYPES_SID)
    assert statement["Condition"]["ForAllValues:StringLike"]["sagemaker:InstanceTypes"] == {
        "Ref": "AllowedInstanceTypes"}
    out = {"StoreBucket": "b", "StorePrefix": "p", "SageMakerRoleArn": "arn:aws:iam::123456789012:role/R",
           "AllowedInstanceTypes": "ml.g5.xlarge,ml.g6.*"}
    cfg = setup.configuration(out, "us-east-1", "repo@sha256:" + "c" * 64)
    assert cfg["allowed_instance_types"] == ["ml.g5.xlarge", "ml.g6.*"]
    setup.check_parameters({"AllowedInstanceTypes": "ml.g5.*,ml.g6e.2xlarge"})
    with pytest.raises(SetupError, match="AllowedInstanceTypes: 'g5' is not an instance type"):
        setup.check_parameters({"AllowedInstanceTypes": "ml.g5.*,g5"})
