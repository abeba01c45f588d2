"""SageMaker, CloudWatch Logs and the execution role scoped to what the extension names (aws/naming.py's PREFIX)
and to the stack's own repository; the execution role's trust policy with SageMaker's source conditions.

moto's IAM enforcement evaluates a Resource only for S3 (every other service is authorised against "*", where a
scoped grant matches nothing): these are held against AWS's documented semantics (tests/harness/iam_semantics.py)
with the resource ARNs of the Service Authorization Reference. The designer's real lifecycle (deploy with
autoscaling, list, delete) runs on moto, and every call it makes is evaluated so: what the code calls must stay
inside what the policy grants."""

from __future__ import annotations

import json

import boto3
import pytest
from comfyui_sagemaker.aws import iam_actions, naming, stack
from comfyui_sagemaker.aws.sagemaker_endpoints import SageMakerEndpoints
from harness.iam_semantics import ACCOUNT, REFS, REGION, allows, resolve, stack_policy
from harness.service_quotas import answering

SM = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
OURS, THEIRS = f"{naming.PREFIX}-portraits-0a1b2c3d", "fraud-model-prod"
GROUP = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/"
INVOKE = ("sagemaker:InvokeEndpoint", "sagemaker:InvokeEndpointWithResponseStream", "sagemaker:InvokeEndpointAsync")
LOG_READS = {"logs:DescribeLogStreams": "group", "logs:FilterLogEvents": "group", "logs:GetLogEvents": "stream"}


def log_arn(endpoint: str, kind: str) -> str:
    """A log group's ARN, or a stream's (GetLogEvents is authorised on the stream: Service Authorization Reference,
    "Actions, resources, and condition keys for Amazon CloudWatch Logs")."""
    group = GROUP + endpoint
    return group if kind == "group" else f"{group}:log-stream:AllTraffic/i-0123456789abcdef0"


def test_the_policies_name_the_prefix_aws_naming_uses():
    assert iam_actions.NAMED == f"{naming.PREFIX}-*"
    assert naming.endpoint_name("Portraits", "s3://b/p").startswith(f"{naming.PREFIX}-")
    assert naming.alarm_name(OURS).startswith(f"{naming.PREFIX}-")


def _written(name: str) -> list[dict]:
    return json.loads((stack.IAM / f"{name}-policy.json").read_text())["Statement"]


def test_the_policy_files_name_the_tables_resources():
    """aws/iam/*.json as written (by hand too) against aws/iam_actions.py's resources."""
    named = sorted(iam_actions.SAGEMAKER_RESOURCES.values())
    by_sid = {name: {s["Sid"]: s for s in _written(name)} for name in ("designer", "artist", "gateway",
                                                                        "execution-role")}
    assert sorted(by_sid["designer"]["EndpointsNamedByTheExtension"]["Resource"]) == named
    for name in ("artist", "gateway"):
        assert sorted(by_sid[name]["InvokeAndRead"]["Resource"]) == named[:2]  # configs and endpoints
    for name in ("designer", "artist", "gateway"):
        assert by_sid[name]["ReadEndpointLogs"]["Resource"] == iam_actions.ENDPOINT_LOG_GROUPS
    assert by_sid["execution-role"]["EndpointLogs"]["Resource"] == iam_actions.ENDPOINT_LOG_GROUPS
    assert by_sid["execution-role"]["PullTheWorkerImage"]["Resource"] == iam_actions.WORKER_REPOSITORY_ARN
    assert by_sid["designer"]["ConnectCheckPermissions"]["Resource"] == iam_actions.SIMULATED_PRINCIPALS


@pytest.mark.parametrize("role", ["designer", "artist", "gateway", "execution-role"])
def test_every_action_on_every_resource_has_a_documented_reason(role):
    """An action on Resource "*" is one that takes no resource, or whose only check names none
    (iam_actions.UNSCOPED, each with its source)."""
    policy = stack_policy(role, kms=True)
    wide = {a for s in policy["Statement"] if s["Resource"] == "*" for a in s["Action"]}
    assert not wide - set(iam_actions.UNSCOPED), sorted(wide - set(iam_actions.UNSCOPED))


@pytest.mark.parametrize("role", ["designer", "artist", "gateway"])
def test_endpoints_are_invoked_only_when_the_extension_named_them(role):
    policy = stack_policy(role)
    for action in (*INVOKE, "sagemaker:DescribeEndpoint", "sagemaker:ListTags"):
        assert allows(policy, action, f"{SM}:endpoint/{OURS}"), action
        assert not allows(policy, action, f"{SM}:endpoint/{THEIRS}"), action
    assert allows(policy, "sagemaker:DescribeEndpointConfig", f"{SM}:endpoint-config/{OURS}-v3")
    assert not allows(policy, "sagemaker:DescribeEndpointConfig", f"{SM}:endpoint-config/{THEIRS}")
    assert allows(policy, "sagemaker:ListEndpoints", "*")


@pytest.mark.parametrize("role", ["designer", "artist", "gateway"])
def test_logs_are_read_only_from_the_extensions_endpoints(role):
    policy = stack_policy(role)
    for action, kind in LOG_READS.items():
        assert allows(policy, action, log_arn(OURS, kind)), action
        assert not allows(policy, action, log_arn(THEIRS, kind)), action
        assert not allows(policy, action, f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/payroll"), action


@pytest.mark.parametrize("role", ["artist", "gateway"])
def test_artists_and_the_gateway_create_update_and_delete_nothing(role):
    policy = stack_policy(role)
    for action in ("sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint", "sagemaker:DeleteEndpoint",
                   "sagemaker:DeleteModel", "sagemaker:UpdateEndpointWeightsAndCapacities"):
        assert not allows(policy, action, f"{SM}:endpoint/{OURS}"), action


def test_a_designer_creates_updates_and_deletes_only_what_the_extension_names():
    designer = stack_policy("designer")
    for kind, actions in {"model": ("CreateModel", "DeleteModel", "AddTags"),
                          "endpoint-config": ("CreateEndpointConfig", "DeleteEndpointConfig", "AddTags"),
                          "endpoint": ("CreateEndpoint", "UpdateEndpoint", "DeleteEndpoint", "AddTags",
                                       "UpdateEndpointWeightsAndCapacities")}.items():
        for action in actions:
            # A new endpoint config names its instance types (the designer policy allows only allowed ones).
            types = {"sagemaker:InstanceTypes": ["ml.g5.xlarge"]} if action == "CreateEndpointConfig" else {}
            assert allows(designer, f"sagemaker:{action}", f"{SM}:{kind}/{OURS}-v2", types), (kind, action)
            assert not allows(designer, f"sagemaker:{action}", f"{SM}:{kind}/{THEIRS}", types), (kind, action)
    # CreateEndpoint and UpdateEndpoint are authorised on the endpoint and on its config (both required
    # resource types): a designer cannot point one of ours at someone else's config.
    assert not allows(designer, "sagemaker:UpdateEndpoint", f"{SM}:endpoint-config/{THEIRS}")


def test_a_designer_simulates_itself_not_other_users():
    designer = stack_policy("designer")
    me = {"aws:username": "alice"}
    assert allows(designer, "iam:SimulatePrincipalPolicy", f"arn:aws:iam::{ACCOUNT}:user/alice", me)
    assert allows(designer, "iam:SimulatePrincipalPolicy", f"arn:aws:iam::{ACCOUNT}:user/studio/alice", me)
    assert not allows(designer, "iam:SimulatePrincipalPolicy", f"arn:aws:iam::{ACCOUNT}:user/bob", me)
    assert not allows(designer, "iam:SimulatePrincipalPolicy", f"arn:aws:iam::{ACCOUNT}:user/malice", me)
    assert not allows(designer, "iam:SimulatePrincipalPolicy", f"arn:aws:iam::{ACCOUNT}:user/alice"), "no username"
    # A role session has no variable naming its role: roles of this account, never another account's.
    assert allows(designer, "iam:SimulatePrincipalPolicy", f"arn:aws:iam::{ACCOUNT}:role/ComfyDesigner")
    assert not allows(designer, "iam:SimulatePrincipalPolicy", "arn:aws:iam::210987654321:role/ComfyDesigner")


# --- the execution role -----------------------------------------------------------------------------------------

def test_the_execution_role_pulls_only_the_stacks_repository():
    role = stack_policy("execution-role")
    ours = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{REFS['Repository']}"
    for action in ("ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"):
        assert allows(role, action, ours), action
        assert not allows(role, action, f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/payroll-service"), action
    assert allows(role, "ecr:GetAuthorizationToken", "*")  # takes no resource (iam_actions.UNSCOPED)


def test_the_execution_role_logs_only_to_the_extensions_endpoint_groups():
    role = stack_policy("execution-role")
    for action, kind in {"logs:CreateLogGroup": "group", "logs:DescribeLogStreams": "group",
                         "logs:CreateLogStream": "stream", "logs:PutLogEvents": "stream"}.items():
        assert allows(role, action, log_arn(OURS, kind)), action
        assert not allows(role, action, log_arn(THEIRS, kind)), action


def trust() -> dict:
    role = stack.template()["Resources"]["ExecutionRole"]["Properties"]["AssumeRolePolicyDocument"]
    statement = resolve(role)["Statement"][0]
    assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    return {"Statement": [{**statement, "Resource": "*"}]}  # a trust policy names no resource


def test_sagemaker_assumes_the_execution_role_only_for_this_accounts_sagemaker():
    """SageMaker Developer Guide, "Cross-service confused deputy prevention" (SageMaker AI Inference): aws:SourceArn
    `arn:<partition>:sagemaker:<region>:<account>:*`, with aws:SourceAccount; a key absent from the request makes
    its condition false."""
    policy = trust()
    hosting = {"aws:SourceAccount": ACCOUNT, "aws:SourceArn": f"{SM}:endpoint/{OURS}"}
    assert allows(policy, "sts:AssumeRole", "*", hosting)
    assert allows(policy, "sts:AssumeRole", "*", {**hosting, "aws:SourceArn": f"{SM}:model/{OURS}-v1"})
    assert not allows(policy, "sts:AssumeRole", "*", {**hosting, "aws:SourceAccount": "210987654321",
                                                      "aws:SourceArn": f"arn:aws:sagemaker:{REGION}:210987654321:x"})
    assert not allows(policy, "sts:AssumeRole", "*", {**hosting, "aws:SourceArn": f"arn:aws:sagemaker:eu-west-1:"
                                                                                   f"{ACCOUNT}:endpoint/{OURS}"})
    assert not allows(policy, "sts:AssumeRole", "*", {}), "no source: refused"


def test_the_trust_policy_is_in_the_stacks_partition():
    text = json.dumps(stack.template()["Resources"]["ExecutionRole"]["Properties"]["AssumeRolePolicyDocument"])
    assert "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:*" in text


# --- the real lifecycle's calls ---------------------------------------------------------------------------------

def _sagemaker_resources(operation: str, params: dict) -> list[str]:
    """The resources IAM authorises a SageMaker call on (Service Authorization Reference: required resource types
    of each action); "*" for the actions that take none."""
    named = {"ModelName": "model", "EndpointConfigName": "endpoint-config", "EndpointName": "endpoint"}
    if operation.startswith("List") and operation != "ListTags":
        return ["*"]
    if operation == "ListTags":
        return [params["ResourceArn"]]
    return [f"{SM}:{kind}/{params[key].lower()}" for key, kind in named.items() if key in params]


def requests_of(operation: str, service: str, params: dict) -> list[tuple[str, str, dict]]:
    """(IAM action, resource ARN, context) for one call, through aws/iam_actions.py's table."""
    out = []
    for action in iam_actions.ACTIONS[(service, operation)]:
        prefix = action.split(":")[0]
        if action == "iam:PassRole":
            out.append((action, params["ExecutionRoleArn"], {"iam:PassedToService": "sagemaker.amazonaws.com"}))
        elif action == "iam:CreateServiceLinkedRole":
            out.append((action, iam_actions.SERVICE_LINKED_ROLE_ARN.replace("arn:aws:iam::*:", f"arn:aws:iam::"
                                                                           f"{ACCOUNT}:"),
                        {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}))
        elif prefix == "sagemaker" and service == "application-autoscaling":
            endpoint = params["ResourceId"].split("/")[1]  # what Application Auto Scaling checks on the target
            out.append((action, f"{SM}:endpoint/{endpoint}", {}))
        elif prefix == "sagemaker":
            # CreateEndpointConfig carries the variants' instance types (Service Authorization Reference:
            # sagemaker:InstanceTypes), which the designer policy's condition reads.
            variants = params.get("ProductionVariants", []) if operation == "CreateEndpointConfig" else []
            context = {"sagemaker:InstanceTypes": [v["InstanceType"] for v in variants]} if variants else {}
            out += [(action, arn, context) for arn in _sagemaker_resources(operation, params)]
        else:  # application-autoscaling and cloudwatch: "*" (iam_actions.UNSCOPED)
            out.append((action, "*", {}))
    return out


def test_the_designers_lifecycle_calls_only_what_the_designer_policy_allows(aws_env):
    from moto import mock_aws

    calls: list[tuple[str, str, dict]] = []

    def record(model, params, **_):
        calls.append((model.service_model.service_name, model.name, params))

    designer = stack_policy("designer")
    with mock_aws():
        role = f"arn:aws:iam::{ACCOUNT}:role/{REFS['ExecutionRole']}"
        clients = {s: boto3.client(s, region_name=REGION) for s in ("sagemaker", "application-autoscaling",
                                                                   "cloudwatch")}
        clients["sagemaker"].create_model(ModelName="m", ExecutionRoleArn=role, PrimaryContainer={"Image": "img:1"})
        clients["sagemaker"].create_endpoint_config(  # someone else's endpoint, which the list must not touch
            EndpointConfigName="abcs-fraud", ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": "m",
                                                                   "InstanceType": "ml.m5.large",
                                                                   "InitialInstanceCount": 1}])
        clients["sagemaker"].create_endpoint(EndpointName="abcs-fraud", EndpointConfigName="abcs-fraud")
        for client in clients.values():
            client.meta.events.register("before-parameter-build", record)
        clients["service-quotas"] = answering("ml.g4dn.xlarge")  # moto has none (its read: test_iam_guardrails)
        endpoints = SageMakerEndpoints("s3://team-store/comfyui", role, "img:1", REGION, clients=clients,
                                       poll_interval=0)
        endpoints.monitor = lambda m, e, recreate=False: endpoints.settle(m, e, recreate=recreate)
        endpoints.in_background = lambda fn, name: fn()  # moto is InService at once
        endpoints.deploy({"name": "Portraits", "version": 1, "custom_nodes": [], "models": [],
                          "endpoint": {"kind": "sagemaker", "instance_type": "ml.g4dn.xlarge", "initial_count": 1,
                                       "mode": "async", "autoscaling": {"min": 0, "max": 2}}})
        assert [e["name"] for e in endpoints.list()] == ["Portraits"]
        endpoints.delete("Portraits")
    service_names = {"sagemaker": "sagemaker", "application-autoscaling": "application-autoscaling",
                     "monitoring": "cloudwatch", "cloudwatch": "cloudwatch"}
    made = {(service, operation) for service, operation, _ in calls}
    assert {("sagemaker", "CreateEndpoint"), ("sagemaker", "ListTags"), ("sagemaker", "DeleteEndpoint"),
            ("application-autoscaling", "RegisterScalableTarget")} <= made, made
    refused = [(operation, action, arn) for service, operation, params in calls
               for action, arn, context in requests_of(operation, service_names.get(service, service), params)
               if not allows(designer, action, arn, context)]
    assert not refused, refused
