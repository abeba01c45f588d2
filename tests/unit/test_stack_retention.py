"""The store's retention has one source of truth (core/retention.py): the bucket's lifecycle rules, the record
expiry and the blob sweep agree on its days; `aws setup` passes this ComfyUI's days to the stack."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import ANY, Stubber
from comfyui_sagemaker.aws import stack
from comfyui_sagemaker.aws.setup import Aws, ensure_stack
from comfyui_sagemaker.core import retention
from comfyui_sagemaker.core.config import Config
from comfyui_sagemaker.core.worker_contract import REPORTS

NAME = "comfyui-sagemaker"


def rules() -> dict[str, dict]:
    bucket = stack.template()["Resources"]["StoreBucket"]["Properties"]
    return {r["Id"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}


def test_records_async_results_and_worker_reports_expire_after_the_one_retention():
    assert stack.template()["Parameters"]["RetentionDays"]["Default"] == retention.RETENTION_DAYS
    assert Config().execution_retention_days == retention.RETENTION_DAYS
    by_prefix = {r["Prefix"]["Fn::Sub"].removeprefix("${StorePrefix}/"): r for r in rules().values() if "Prefix" in r}
    for prefix in ("executions/", "async/", REPORTS, retention.SYNCED_INPUTS):
        assert by_prefix[prefix]["ExpirationInDays"] == {"Ref": "RetentionDays"}, prefix
    # The async requests and results a run still reads live as long as its record (they were 7 days).
    assert by_prefix["async/"]["ExpirationInDays"] == by_prefix["executions/"]["ExpirationInDays"]
    # Blobs are shared: no rule expires them, the sweep does (nothing a live record names).
    assert not [p for p in by_prefix if "blobs/".startswith(p) or p.startswith("blobs/")]
    assert "ExecutionRecordsExpireDays" not in stack.template()["Parameters"]


def test_the_written_template_is_the_generated_one():
    assert stack.TEMPLATE_FILE.read_text() == stack.template_json()


@pytest.fixture
def cloudformation(aws_env):
    client = boto3.client("cloudformation", region_name="us-east-1")
    with Stubber(client) as stub:
        yield Aws("us-east-1", lambda service: client), stub
        stub.assert_no_pending_responses()


def test_an_update_of_a_stack_made_with_the_old_parameter_does_not_send_it(cloudformation):
    aws, stub = cloudformation
    old = [{"ParameterKey": k, "ParameterValue": v} for k, v in (("StorePrefix", "comfyui"), ("ImageTag", "v3"),
                                                                  ("ExecutionRecordsExpireDays", "90"))]
    stub.add_response("describe_stacks", {"Stacks": [{
        "StackName": NAME, "CreationTime": "2026-12-01T00:00:00Z", "StackStatus": "CREATE_COMPLETE",
        "Parameters": old}]}, {"StackName": NAME})
    stub.add_client_error("update_stack", "ValidationError", "No updates are to be performed.", http_status_code=400,
                          expected_params={"StackName": NAME, "TemplateBody": ANY, "Capabilities": ["CAPABILITY_IAM"],
                                           "Parameters": [{"ParameterKey": "StorePrefix", "ParameterValue": "comfyui"},
                                                          {"ParameterKey": "RetentionDays", "ParameterValue": "30"}]})
    ensure_stack(aws, NAME, {"StorePrefix": "comfyui", "RetentionDays": "30"}, print, poll=0)


def test_an_update_keeps_only_the_previous_values_that_differ_from_the_templates_defaults(cloudformation):
    """A parameter the run does not set keeps its value: UsePreviousValue where it differs from the template's
    default, nothing where it equals it (the same value; moto's CloudFormation keeps no previous value of a list
    parameter given by default, and answered such an update with a 500)."""
    aws, stub = cloudformation
    allowed = stack.template()["Parameters"]["AllowedInstanceTypes"]["Default"]
    old = [{"ParameterKey": "StorePrefix", "ParameterValue": "studio"},  # not the default (comfyui): kept
           {"ParameterKey": "AllowedInstanceTypes", "ParameterValue": allowed},  # the default: left to it
           {"ParameterKey": "RetentionDays", "ParameterValue": "30"}]  # given by this run
    stub.add_response("describe_stacks", {"Stacks": [{
        "StackName": NAME, "CreationTime": "2026-12-01T00:00:00Z", "StackStatus": "CREATE_COMPLETE",
        "Parameters": old}]}, {"StackName": NAME})
    stub.add_client_error("update_stack", "ValidationError", "No updates are to be performed.", http_status_code=400,
                          expected_params={"StackName": NAME, "TemplateBody": ANY, "Capabilities": ["CAPABILITY_IAM"],
                                           "Parameters": [{"ParameterKey": "RetentionDays", "ParameterValue": "30"},
                                                          {"ParameterKey": "StorePrefix", "UsePreviousValue": True}]})
    ensure_stack(aws, NAME, {"RetentionDays": "30"}, print, poll=0)
