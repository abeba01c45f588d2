"""`aws setup` and the Connect check against AWS's documented answers, the requests checked by botocore's
Stubber (its service models): a stack whose first creation failed, a bucket name another account holds,
a stack with nothing to update, an image build followed and one that fails (its log's tail), each
Connect check's verdict, and IAM's policy simulator where AWS offers it."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import boto3
import pytest
from botocore.stub import ANY, Stubber
from comfyui_sagemaker.aws import connect, stack
from comfyui_sagemaker.aws.setup import Aws, SetupError, build_image, ensure_stack
from comfyui_sagemaker.core.config import Config
from harness.simulator import stub_simulations

pytestmark = pytest.mark.stubber

NAME = "comfyui-sagemaker"
STACK_ID = f"arn:aws:cloudformation:us-east-1:123456789012:stack/{NAME}/0a1b2c3d"
NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
ROLE = "arn:aws:iam::123456789012:role/comfyui-sagemaker-ExecutionRole-ABC"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/comfyui-sagemaker-worker:latest"


@pytest.fixture
def stubs(aws_env):
    made: dict[str, tuple] = {}

    def make(service):
        client = boto3.client(service, region_name="us-east-1")
        stub = Stubber(client)
        stub.activate()
        made[service] = (client, stub)
        return client

    aws = Aws("us-east-1", make)
    yield aws, lambda service: (aws(service), made[service][1])[1]
    for _, stub in made.values():
        stub.assert_no_pending_responses()
        stub.deactivate()


def described(status: str, outputs: dict | None = None) -> dict:
    return {"Stacks": [{"StackName": NAME, "StackId": STACK_ID, "CreationTime": NOW, "StackStatus": status,
                        "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in (outputs or {}).items()]}]}


def absent(stub) -> None:
    stub.add_client_error("describe_stacks", "ValidationError", f"Stack with id {NAME} does not exist",
                          http_status_code=400, expected_params={"StackName": NAME})


def events(stub, *failures: tuple[str, str]) -> None:
    stub.add_response("describe_stack_events", {"StackEvents": [
        {"StackId": STACK_ID, "EventId": str(i), "StackName": NAME, "LogicalResourceId": logical,
         "Timestamp": NOW, "ResourceStatus": "CREATE_FAILED", "ResourceStatusReason": reason}
        for i, (logical, reason) in enumerate(reversed(failures))]}, {"StackName": NAME})


# A new stack's image repository is named after the stack (two stacks in one account never collide).
CREATE = {"StackName": NAME, "TemplateBody": ANY, "Parameters": [
    {"ParameterKey": "StorePrefix", "ParameterValue": "comfyui"},
    {"ParameterKey": "RepositoryName", "ParameterValue": f"{NAME}-worker"}], "Capabilities": ["CAPABILITY_IAM"]}
# An update keeps what this run does not set (an omitted parameter would take its default: a renamed
# repository would be a new one, the old one and its images deleted). A parameter the template no longer
# declares (ImageTag: tags are per build now) is not sent: CloudFormation would refuse the update.
UPDATE = {"StackName": NAME, "TemplateBody": ANY, "Parameters": [
    {"ParameterKey": "StorePrefix", "ParameterValue": "comfyui"},
    {"ParameterKey": "RepositoryName", "UsePreviousValue": True}], "Capabilities": ["CAPABILITY_IAM"]}


def test_a_stack_whose_creation_failed_is_only_recreated_when_asked(stubs):
    aws, stub = stubs
    cf = stub("cloudformation")
    cf.add_response("describe_stacks", described("ROLLBACK_COMPLETE"), {"StackName": NAME})
    events(cf, ("StoreBucket", "team-store already exists"))
    asked = []
    with pytest.raises(SetupError, match="ROLLBACK_COMPLETE .*StoreBucket: team-store already exists.*--recreate"):
        ensure_stack(aws, NAME, {"StorePrefix": "comfyui"}, print, confirm=lambda q: asked.append(q) or False)
    assert asked and "Delete it and create it anew?" in asked[0]

    cf.add_response("describe_stacks", described("ROLLBACK_COMPLETE"), {"StackName": NAME})
    cf.add_response("delete_stack", {}, {"StackName": NAME})
    absent(cf)
    cf.add_response("create_stack", {"StackId": STACK_ID}, CREATE)
    cf.add_response("describe_stacks", described("CREATE_COMPLETE"), {"StackName": NAME})
    said = []
    got = ensure_stack(aws, NAME, {"StorePrefix": "comfyui"}, said.append, recreate=True, poll=0)
    assert got["StackStatus"] == "CREATE_COMPLETE"
    assert said[0].startswith("deleting stack") and "creating stack comfyui-sagemaker" in said


def test_a_bucket_name_another_account_holds_is_said_in_cloudformations_words(stubs):
    aws, stub = stubs
    cf = stub("cloudformation")
    absent(cf)
    cf.add_response("create_stack", {"StackId": STACK_ID}, CREATE)
    cf.add_response("describe_stacks", described("CREATE_IN_PROGRESS"), {"StackName": NAME})
    cf.add_response("describe_stacks", described("ROLLBACK_COMPLETE"), {"StackName": NAME})
    events(cf, ("StoreBucket", "team-store already exists"), ("Repository", "Resource creation cancelled"))
    with pytest.raises(SetupError, match="is ROLLBACK_COMPLETE: StoreBucket: team-store already exists"):
        ensure_stack(aws, NAME, {"StorePrefix": "comfyui"}, print, poll=0)


def test_a_stack_with_nothing_to_update_is_up_to_date(stubs):
    aws, stub = stubs
    cf = stub("cloudformation")
    current = described("CREATE_COMPLETE")
    current["Stacks"][0]["Parameters"] = [{"ParameterKey": k, "ParameterValue": v} for k, v in (
        ("StorePrefix", "studio"), ("RepositoryName", "team-images"), ("ImageTag", "v3"))]
    cf.add_response("describe_stacks", current, {"StackName": NAME})
    cf.add_client_error("update_stack", "ValidationError", "No updates are to be performed.", http_status_code=400,
                        expected_params=UPDATE)
    said = []
    assert ensure_stack(aws, NAME, {"StorePrefix": "comfyui"}, said.append)["StackStatus"] == "CREATE_COMPLETE"
    assert said[-1] == f"stack {NAME} is up to date"
    assert json.loads(stack.template_json())["Resources"]  # what was sent is the generated template


def build(status: str, phase: str, logs: dict | None = None) -> dict:
    b = {"id": "img:1", "buildStatus": status, "currentPhase": phase}
    return {"builds": [{**b, "logs": logs}] if logs else [b]}


def test_an_image_build_is_followed_phase_by_phase(stubs):
    aws, stub = stubs
    cb = stub("codebuild")
    cb.add_response("start_build", {"build": {"id": "img:1"}}, {"projectName": "img"})
    cb.add_response("batch_get_builds", build("IN_PROGRESS", "BUILD"), {"ids": ["img:1"]})
    cb.add_response("batch_get_builds", build("SUCCEEDED", "COMPLETED"), {"ids": ["img:1"]})
    said = []
    build_image(aws, "img", said.append, poll=0)
    assert said == ["building the worker image (img:1)", "  build phase: BUILD", "  build phase: COMPLETED"]


def test_a_failed_build_shows_its_logs_tail(stubs):
    aws, stub = stubs
    cb, logs = stub("codebuild"), stub("logs")
    cb.add_response("start_build", {"build": {"id": "img:2"}}, {"projectName": "img"})
    cb.add_response("batch_get_builds", build("FAILED", "COMPLETED", {"groupName": "/aws/codebuild/img",
                                                                      "streamName": "s2"}), {"ids": ["img:2"]})
    logs.add_response("get_log_events", {"events": [{"timestamp": 1, "message": "Step 5/9 : RUN pip install\n"},
                                                    {"timestamp": 2, "message": "ERROR: No matching distribution"}]},
                      {"logGroupName": "/aws/codebuild/img", "logStreamName": "s2", "limit": 30,
                       "startFromHead": False})
    with pytest.raises(SetupError) as err:
        build_image(aws, "img", print, poll=0)
    assert err.value.message == "the image build FAILED:\nStep 5/9 : RUN pip install\nERROR: No matching distribution"


CONFIG = Config(store="s3", s3_bucket="team-store", s3_prefix="comfyui", region="us-east-1",
                sagemaker_role_arn=ROLE, worker_image_uri=IMAGE)
TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
INDEX = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
         "manifests": [{"digest": "sha256:" + "a" * 64, "platform": {"os": "linux", "architecture": "amd64"}}]}


def connect_responses(stub, caller="arn:aws:sts::123456789012:assumed-role/Designer/alice", trust=TRUST,
                      index=INDEX, decisions=None) -> None:
    stub("sts").add_response("get_caller_identity", {"Account": "123456789012", "Arn": caller, "UserId": "AROA:alice"})
    s3 = stub("s3")
    s3.add_response("list_objects_v2", {"KeyCount": 0, "IsTruncated": False},
                    {"Bucket": "team-store", "Prefix": "comfyui/", "MaxKeys": 1})
    s3.add_response("put_object", {}, {"Bucket": "team-store", "Key": ANY, "Body": b""})
    s3.add_response("delete_object", {}, {"Bucket": "team-store", "Key": ANY})
    iam = stub("iam")
    role_name = ROLE.rsplit("/", 1)[1]
    iam.add_response("get_role", {"Role": {"Path": "/", "RoleName": role_name, "RoleId": "AROAEXAMPLE123456",
                                           "Arn": ROLE, "CreateDate": NOW,
                                           "AssumeRolePolicyDocument": json.dumps(trust)}},
                     {"RoleName": ROLE.rsplit("/", 1)[1]})
    stub("ecr").add_response("batch_get_image", {"images": [{"imageManifest": json.dumps(index),
                                                             "imageId": {"imageTag": "latest"}}], "failures": []},
                             {"repositoryName": "comfyui-sagemaker-worker", "imageIds": [{"imageTag": "latest"}],
                              "acceptedMediaTypes": ANY})
    if decisions is None:
        iam.add_client_error("simulate_principal_policy", "AccessDenied", "not authorized to perform "
                             "iam:SimulatePrincipalPolicy", http_status_code=403)
    else:
        stub_simulations(iam, "arn:aws:iam::123456789012:role/Designer", ROLE, "team-store", "comfyui", decisions)


def verdicts(results: list[dict]) -> dict[str, str]:
    return {r["name"]: r["status"] for r in results}


def test_every_check_green_with_the_simulator_run_for_the_sessions_role(stubs):
    aws, stub = stubs
    connect_responses(stub, decisions={})
    results = connect.check(CONFIG, aws)
    assert set(verdicts(results).values()) == {"ok"}, results
    assert "linux/amd64" in next(r["detail"] for r in results if r["name"] == "worker image")


def test_a_denied_action_is_named_with_its_fix(stubs):
    aws, stub = stubs
    connect_responses(stub, decisions={"iam:PassRole": "implicitDeny"})
    permissions = connect.check(CONFIG, aws)[-1]
    assert permissions["status"] == "failed" and "iam:PassRole" in permissions["detail"]
    assert "DesignerPolicy" in permissions["fix"]


def test_no_simulator_is_a_warning_not_a_failure(stubs):
    aws, stub = stubs
    connect_responses(stub)
    permissions = connect.check(CONFIG, aws)[-1]
    assert permissions["status"] == "warning" and "did not run the permission simulation" in permissions["detail"]


def test_a_role_that_does_not_trust_sagemaker_and_an_arm_only_image_fail(stubs):
    aws, stub = stubs
    lambda_trust = {**TRUST, "Statement": [{**TRUST["Statement"][0], "Principal": {"Service": "lambda.amazonaws.com"}}]}
    arm = {**INDEX, "manifests": [{**INDEX["manifests"][0], "platform": {"os": "linux", "architecture": "arm64"}}]}
    connect_responses(stub, trust=lambda_trust, index=arm, decisions={})
    results = {r["name"]: r for r in connect.check(CONFIG, aws)}
    role = results["execution role"]
    assert role["status"] == "failed" and "sagemaker.amazonaws.com" in role["fix"]
    assert "SageMaker needs linux/amd64" in results["worker image"]["detail"]


def test_credentials_of_another_account_than_the_roles(stubs):
    aws, stub = stubs
    stub("sts").add_response("get_caller_identity", {"Account": "210987654321", "UserId": "AIDA",
                                                     "Arn": "arn:aws:iam::210987654321:user/bob"})
    s3 = stub("s3")
    s3.add_client_error("list_objects_v2", "AccessDenied", "Access Denied", http_status_code=403)
    stub("ecr").add_client_error("batch_get_image", "RepositoryNotFoundException", "The repository with name "
                                 "'comfyui-sagemaker-worker' does not exist in the registry with id '210987654321'",
                                 http_status_code=400)
    stub("iam").add_client_error("simulate_principal_policy", "AccessDenied", "denied", http_status_code=403)
    results = {r["name"]: r for r in connect.check(CONFIG, aws)}
    assert results["execution role"]["status"] == "failed"
    assert "account 123456789012, the credentials are account 210987654321's" in results["execution role"]["detail"]
    assert results["bucket"]["status"] == "failed" and results["worker image"]["status"] == "failed"


def test_no_credentials_stops_at_the_first_check(stubs):
    aws, stub = stubs
    stub("sts").add_client_error("get_caller_identity", "InvalidClientTokenId",
                                 "The security token included in the request is invalid.", http_status_code=403)
    results = connect.check(CONFIG, aws)
    assert [r["name"] for r in results] == ["credentials"] and results[0]["status"] == "failed"
    assert "configure AWS credentials" in results[0]["fix"]
