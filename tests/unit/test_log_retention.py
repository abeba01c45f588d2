"""CloudWatch log groups are kept LOG_RETENTION_DAYS, not for good: a SageMaker endpoint's group is made with a
retention before CreateEndpoint (botocore's Stubber: the calls' shapes and order), the image build's group is
the stack's own (AWS::Logs::LogGroup named by the project's LogsConfig), and the policies grant exactly that."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import ANY, Stubber
from comfyui_sagemaker.aws import iam_actions, stack
from comfyui_sagemaker.aws.endpoint_logs import LOG_RETENTION_DAYS, RETENTION_VALUES, keep_logs
from comfyui_sagemaker.aws.setup import SetupError, check_parameters
from harness.sagemaker_stub import ENDPOINT, stubbed_endpoints

GROUP = f"/aws/sagemaker/Endpoints/{ENDPOINT}"
ARN = "arn:aws:sagemaker:us-east-1:123456789012:"
MANIFEST = {"name": "Portraits", "version": 1, "custom_nodes": [], "models": [],
            "endpoint": {"kind": "sagemaker", "instance_type": "ml.g4dn.xlarge", "initial_count": 1,
                         "mode": "async", "autoscaling": None}}


@pytest.fixture
def cloud(aws_env):
    """SageMaker and CloudWatch Logs behind Stubbers; `calls` lists every operation in the order sent."""
    calls: list[str] = []
    with stubbed_endpoints(("sagemaker", "logs", "service-quotas"), log_retention_days=LOG_RETENTION_DAYS) as cloud:
        for c in cloud.clients.values():
            c.meta.events.register_first("before-call.*.*", lambda model, **kw: calls.append(model.name))
        yield cloud.endpoints, cloud.stubs["sagemaker"], cloud.stubs["logs"], calls


def a_new_endpoint(sm) -> None:
    sm.add_client_error("describe_endpoint", "ValidationException", f'Could not find endpoint "{ENDPOINT}".',
                        expected_params={"EndpointName": ENDPOINT})
    sm.add_response("create_model", {"ModelArn": ARN + "model/m"}, None)
    sm.add_response("create_endpoint_config", {"EndpointConfigArn": ARN + "endpoint-config/c"}, None)


def test_a_new_endpoints_log_group_is_made_with_its_retention_before_the_endpoint(cloud):
    endpoints, sm, logs, calls = cloud
    a_new_endpoint(sm)
    logs.add_response("create_log_group", {}, {"logGroupName": GROUP})
    logs.add_response("put_retention_policy", {}, {"logGroupName": GROUP, "retentionInDays": 30})
    sm.add_response("create_endpoint", {"EndpointArn": ARN + "endpoint/e"},
                    {"EndpointName": ENDPOINT, "EndpointConfigName": f"{ENDPOINT}-v1", "Tags": ANY})
    assert endpoints.deploy(MANIFEST)["state"] == "Creating"
    assert calls[-3:] == ["CreateLogGroup", "PutRetentionPolicy", "CreateEndpoint"]


def test_a_group_an_earlier_deploy_made_gets_its_retention_again(cloud):
    endpoints, sm, logs, calls = cloud
    a_new_endpoint(sm)
    logs.add_client_error("create_log_group", "ResourceAlreadyExistsException",
                          "The specified log group already exists", http_status_code=400,
                          expected_params={"logGroupName": GROUP})
    logs.add_response("put_retention_policy", {}, {"logGroupName": GROUP, "retentionInDays": 30})
    sm.add_response("create_endpoint", {"EndpointArn": ARN + "endpoint/e"}, None)
    endpoints.deploy(MANIFEST)
    assert calls[-1] == "CreateEndpoint"


def test_a_designer_policy_without_the_log_grants_still_deploys_and_says_so(cloud, caplog):
    endpoints, sm, logs, calls = cloud
    a_new_endpoint(sm)
    logs.add_client_error("create_log_group", "AccessDeniedException",
                          "User: arn:aws:iam::123456789012:user/d is not authorized to perform: "
                          "logs:CreateLogGroup", http_status_code=400, expected_params={"logGroupName": GROUP})
    sm.add_response("create_endpoint", {"EndpointArn": ARN + "endpoint/e"}, None)
    endpoints.deploy(MANIFEST)
    assert calls[-2:] == ["CreateLogGroup", "CreateEndpoint"]
    assert f"endpoint {ENDPOINT}'s log group keeps its events for good" in caplog.text


def test_only_cloudwatchs_retention_values_are_sent(aws_env):
    logs = boto3.client("logs", region_name="us-east-1")
    with Stubber(logs), pytest.raises(ValueError, match="not 31"):
        keep_logs(logs, ENDPOINT, 31)
    assert LOG_RETENTION_DAYS in RETENTION_VALUES


def test_the_designer_may_make_and_keep_only_endpoint_log_groups():
    iam = stack.IAM
    for policy in ("designer", "artist", "gateway", "execution-role"):
        doc = json.loads((iam / f"{policy}-policy.json").read_text())
        granting = [s for s in doc["Statement"]
                    if {"logs:CreateLogGroup", "logs:PutRetentionPolicy"} & set(s["Action"])]
        if policy == "designer":
            assert [(sorted(s["Action"]), s["Resource"]) for s in granting] == [
                (["logs:CreateLogGroup", "logs:PutRetentionPolicy"], iam_actions.ENDPOINT_LOG_GROUPS)]
        elif policy != "execution-role":  # SageMaker itself makes the group it logs to with the execution role
            assert granting == [], policy
    assert iam_actions.ACTIONS[("logs", "PutRetentionPolicy")] == ["logs:PutRetentionPolicy"]


def test_the_image_builds_log_group_is_the_stacks_with_a_retention():
    t = stack.template()
    assert t["Parameters"]["LogRetentionDays"]["Default"] == LOG_RETENTION_DAYS
    assert t["Parameters"]["LogRetentionDays"]["AllowedValues"] == list(RETENTION_VALUES)
    group = t["Resources"]["BuildLogs"]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert group["Properties"]["LogGroupName"]["Fn::Sub"].startswith("/aws/codebuild/")
    build = t["Resources"]["ImageBuild"]["Properties"]
    assert build["LogsConfig"] == {"CloudWatchLogs": {"Status": "ENABLED", "GroupName": {"Ref": "BuildLogs"}}}
    # The build role writes its own group's streams, and makes no group of its own.
    role = t["Resources"]["BuildRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]["Fn::If"][2]
    logs = [s for s in role if any(a.startswith("logs:") for a in s["Action"])]
    assert logs == [{"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                     "Resource": {"Fn::GetAtt": ["BuildLogs", "Arn"]}}]


def test_a_log_retention_cloudwatch_does_not_offer_is_refused_before_any_aws_call():
    with pytest.raises(SetupError, match="LogRetentionDays must be one of 1, 3, 5"):
        check_parameters({"LogRetentionDays": "31"})
    check_parameters({"LogRetentionDays": "90"})
