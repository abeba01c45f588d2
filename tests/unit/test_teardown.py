"""`aws teardown` against AWS's documented answers, every request checked by botocore's Stubber (its
service models): it checks everything before deleting anything (the build's source zip is not data),
waits until SageMaker has deleted the endpoints (DescribeEndpoint: Deleting, then ValidationException
"Could not find endpoint") before deleting the stack and its execution role, finds the configs and
models a stopped endpoint keeps, and removes the log groups of this store's endpoints and of the image
build (and no other store's or project's)."""

from __future__ import annotations

from datetime import datetime, timezone

import boto3
import pytest
from botocore.stub import Stubber
from comfyui_sagemaker.aws import naming
from comfyui_sagemaker.aws.setup import Aws, SetupError
from comfyui_sagemaker.aws.teardown import teardown

pytestmark = pytest.mark.stubber

NAME = "comfyui-sagemaker"
ACCOUNT = "123456789012"
STACK_ID = f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/{NAME}/0a1b2c3d"
NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
BUCKET, PREFIX = "team-store", "comfyui"
DIGEST = naming.store_digest(f"s3://{BUCKET}/{PREFIX}")
ENDPOINT = naming.endpoint_name("Portraits", f"s3://{BUCKET}/{PREFIX}")
VERSION = naming.versioned_name("Portraits", 3, f"s3://{BUCKET}/{PREFIX}")
STOPPED = naming.versioned_name("Sketches", 1, f"s3://{BUCKET}/{PREFIX}")
OTHER = f"backup-of-{DIGEST}-v1"  # a name ListModels matches that is not a version of ours: kept
SM = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}"
PROJECT = "ImageBuild-a1B2c3D4e5F6"
OUTPUTS = {"StoreBucket": BUCKET, "StorePrefix": PREFIX, "RepositoryUri":
           f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/{NAME}-worker", "BuildProject": PROJECT}
ENDPOINT_LOGS = f"/aws/sagemaker/Endpoints/{ENDPOINT}"
BUILD_LOGS = f"/aws/codebuild/{PROJECT}"
SOURCE = f"{PREFIX}/source/comfyui-sagemaker.zip"


@pytest.fixture
def stubs(aws_env):
    made: dict[str, tuple] = {}
    calls: list[str] = []

    def make(service):
        client = boto3.client(service, region_name="us-east-1")
        client.meta.events.register("before-parameter-build",
                                    lambda model, **_: calls.append(f"{service}.{model.name}"))
        stub = Stubber(client)
        stub.activate()
        made[service] = (client, stub)
        return client

    aws = Aws("us-east-1", make)
    yield aws, lambda service: (aws(service), made[service][1])[1], calls
    for _, stub in made.values():
        stub.assert_no_pending_responses()
        stub.deactivate()


def stack_described(cf) -> None:
    cf.add_response("describe_stacks", {"Stacks": [{
        "StackName": NAME, "StackId": STACK_ID, "CreationTime": NOW, "StackStatus": "UPDATE_COMPLETE",
        "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in OUTPUTS.items()]}]}, {"StackName": NAME})


def tagged(sm, arn: str, digest: str = DIGEST) -> None:
    sm.add_response("list_tags", {"Tags": [{"Key": naming.TAG_STORE, "Value": digest}]}, {"ResourceArn": arn})


def sagemaker_inventory(sm, endpoints: dict[str, str], versions: list[str], other: list[str] = ()) -> None:
    """ListEndpoints, ListEndpointConfigs, ListModels as AWS answers them, each item's tags read."""
    sm.add_response("list_endpoints", {"Endpoints": [
        {"EndpointName": n, "EndpointArn": f"{SM}:endpoint/{n}", "CreationTime": NOW, "LastModifiedTime": NOW,
         "EndpointStatus": s} for n, s in endpoints.items()]}, {"NameContains": "cs-"})
    for n in endpoints:
        tagged(sm, f"{SM}:endpoint/{n}")
    sm.add_response("list_endpoint_configs", {"EndpointConfigs": [
        {"EndpointConfigName": n, "EndpointConfigArn": f"{SM}:endpoint-config/{n}", "CreationTime": NOW}
        for n in versions]}, {"NameContains": f"-{DIGEST}-v"})
    for n in versions:
        tagged(sm, f"{SM}:endpoint-config/{n}")
    sm.add_response("list_models", {"Models": [
        {"ModelName": n, "ModelArn": f"{SM}:model/{n}", "CreationTime": NOW} for n in [*versions, *other]]},
        {"NameContains": f"-{DIGEST}-v"})
    for n in versions:
        tagged(sm, f"{SM}:model/{n}")


def log_groups(logs, endpoints: list[str], builds: list[str]) -> None:
    """DescribeLogGroups by prefix as CloudWatch Logs answers it: the endpoints' groups, then the build's."""
    for prefix, names in (("/aws/sagemaker/Endpoints/cs-", endpoints), (BUILD_LOGS, builds)):
        logs.add_response("describe_log_groups", {"logGroups": [
            {"logGroupName": n, "creationTime": 1, "storedBytes": 1,
             "arn": f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{n}:*"} for n in names]},
            {"logGroupNamePrefix": prefix})


def objects(s3, *keys: str) -> None:
    s3.add_response("list_objects_v2", {"KeyCount": len(keys), "IsTruncated": False, "Contents": [
        {"Key": k, "Size": 1, "LastModified": NOW} for k in keys]}, {"Bucket": BUCKET})


def no_scaling(aas, cw, endpoint: str) -> None:
    rid = naming.resource_id(endpoint)
    dim = {"ServiceNamespace": "sagemaker", "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"}
    aas.add_response("describe_scaling_policies", {"ScalingPolicies": []}, {**dim, "ResourceId": rid})
    aas.add_response("describe_scalable_targets", {"ScalableTargets": []}, {**dim, "ResourceIds": [rid]})
    alarms = naming.alarm_names(endpoint)
    cw.add_response("delete_alarms", {}, {"AlarmNames": alarms})


def described_endpoint(sm, status: str) -> None:
    sm.add_response("describe_endpoint", {
        "EndpointName": ENDPOINT, "EndpointArn": f"{SM}:endpoint/{ENDPOINT}", "EndpointConfigName": VERSION,
        "EndpointStatus": status, "CreationTime": NOW, "LastModifiedTime": NOW}, {"EndpointName": ENDPOINT})


def gone(sm) -> None:
    sm.add_client_error("describe_endpoint", "ValidationException",
                        f'Could not find endpoint "{SM}:endpoint/{ENDPOINT}".', http_status_code=400,
                        expected_params={"EndpointName": ENDPOINT})


def stack_deleted(stub, groups: list[str] = (), images: int = 1) -> None:
    """After the versions: the images (ListImages by pages of 100, BatchDeleteImage at most 100 ids a call),
    the stack, the log groups, then the bucket holding only the source zip."""
    ecr, cf, s3 = stub("ecr"), stub("cloudformation"), stub("s3")
    ids = [{"imageDigest": f"sha256:{i:064x}", "imageTag": f"src-{i:016x}"} for i in range(images)]
    pages = [ids[i:i + 100] for i in range(0, len(ids), 100)] or [[]]
    for n, page in enumerate(pages):
        more = {"nextToken": f"t{n + 1}"} if n + 1 < len(pages) else {}
        ecr.add_response("list_images", {"imageIds": page, **more},
                         {"repositoryName": f"{NAME}-worker", **({"nextToken": f"t{n}"} if n else {})})
    for page in (p for p in pages if p):
        ecr.add_response("batch_delete_image", {"imageIds": page, "failures": []},
                         {"repositoryName": f"{NAME}-worker", "imageIds": page})
    cf.add_response("delete_stack", {}, {"StackName": NAME})
    cf.add_client_error("describe_stacks", "ValidationError", f"Stack with id {NAME} does not exist",
                        http_status_code=400, expected_params={"StackName": NAME})
    for group in groups:
        stub("logs").add_response("delete_log_group", {}, {"logGroupName": group})
    objects(s3, SOURCE)
    s3.add_response("delete_objects", {"Deleted": [{"Key": SOURCE}]},
                    {"Bucket": BUCKET, "Delete": {"Objects": [{"Key": SOURCE}]}})
    s3.add_response("delete_bucket", {}, {"Bucket": BUCKET})


def test_data_in_the_bucket_refuses_before_any_endpoint_is_deleted(stubs):
    aws, stub, calls = stubs
    stack_described(stub("cloudformation"))
    sagemaker_inventory(stub("sagemaker"), {ENDPOINT: "InService"}, [VERSION])
    objects(stub("s3"), SOURCE, f"{PREFIX}/templates/portrait.json")
    log_groups(stub("logs"), [ENDPOINT_LOGS], [BUILD_LOGS])
    with pytest.raises(SetupError, match=rf"bucket {BUCKET} still holds objects \(1: {PREFIX}/templates/portrait"
                                         r".json.*--delete-data.*nothing was deleted"):
        teardown(aws, NAME, print, force=True, poll=0)
    assert not [c for c in calls if ".Delete" in c or "Deregister" in c], calls


def test_a_busy_endpoint_refuses_before_anything_is_deleted(stubs):
    aws, stub, calls = stubs
    stack_described(stub("cloudformation"))
    sagemaker_inventory(stub("sagemaker"), {ENDPOINT: "SystemUpdating"}, [VERSION])
    objects(stub("s3"), SOURCE)
    log_groups(stub("logs"), [], [])
    with pytest.raises(SetupError, match=f"no delete of {ENDPOINT} \\(SystemUpdating\\).*nothing was deleted"):
        teardown(aws, NAME, print, force=True, delete_data=True, poll=0)
    assert not [c for c in calls if ".Delete" in c], calls


def test_the_stack_and_its_role_wait_until_sagemaker_has_deleted_the_endpoint(stubs):
    aws, stub, calls = stubs
    sm = stub("sagemaker")
    stack_described(stub("cloudformation"))
    sagemaker_inventory(sm, {ENDPOINT: "InService"}, [VERSION])
    objects(stub("s3"), SOURCE)  # only the build's source: no --delete-data needed
    # Another store's endpoint and another project share the prefixes: theirs are kept.
    log_groups(stub("logs"), [ENDPOINT_LOGS, "/aws/sagemaker/Endpoints/cs-portraits-0badf00d"],
               [BUILD_LOGS, f"{BUILD_LOGS}-copy"])
    no_scaling(stub("application-autoscaling"), stub("cloudwatch"), ENDPOINT)
    sm.add_response("delete_endpoint", {}, {"EndpointName": ENDPOINT})
    described_endpoint(sm, "Deleting")
    described_endpoint(sm, "Deleting")
    gone(sm)
    sm.add_response("delete_endpoint_config", {}, {"EndpointConfigName": VERSION})
    sm.add_response("delete_model", {}, {"ModelName": VERSION})
    stack_deleted(stub, [ENDPOINT_LOGS, BUILD_LOGS])
    said: list[str] = []
    teardown(aws, NAME, said.append, force=True, poll=0)
    gone_at = max(i for i, c in enumerate(calls) if c == "sagemaker.DescribeEndpoint")
    assert calls.index("cloudformation.DeleteStack") > gone_at
    assert calls.index("sagemaker.DeleteModel") > gone_at  # the model the endpoint ran, too
    assert calls.index("logs.DeleteLogGroup") > calls.index("cloudformation.DeleteStack")  # nothing writes there now
    assert f"endpoint {ENDPOINT} is gone" in said and f"deleted bucket {BUCKET}" in said
    assert f"deleted log group {ENDPOINT_LOGS}" in said and f"deleted log group {BUILD_LOGS}" in said


def test_an_endpoint_sagemaker_does_not_finish_deleting_keeps_the_stack(stubs):
    aws, stub, calls = stubs
    sm = stub("sagemaker")
    stack_described(stub("cloudformation"))
    sagemaker_inventory(sm, {ENDPOINT: "InService"}, [])
    objects(stub("s3"), SOURCE)
    log_groups(stub("logs"), [ENDPOINT_LOGS], [BUILD_LOGS])
    no_scaling(stub("application-autoscaling"), stub("cloudwatch"), ENDPOINT)
    sm.add_response("delete_endpoint", {}, {"EndpointName": ENDPOINT})
    described_endpoint(sm, "Deleting")
    with pytest.raises(SetupError, match=f"did not finish deleting {ENDPOINT} in 0 s; the stack and its execution "
                                         "role are kept"):
        teardown(aws, NAME, print, force=True, poll=0, gone_timeout=0)
    assert "cloudformation.DeleteStack" not in calls and "sagemaker.DeleteModel" not in calls


def test_a_stopped_endpoints_config_and_model_are_found_and_deleted(stubs):
    """A stopped endpoint has no endpoint: its kept config and model are this store's, by name and tag."""
    aws, stub, calls = stubs
    sm = stub("sagemaker")
    stack_described(stub("cloudformation"))
    sagemaker_inventory(sm, {}, [STOPPED], other=[OTHER])
    objects(stub("s3"), SOURCE)
    stopped_logs = f"/aws/sagemaker/Endpoints/{STOPPED.rsplit('-v', 1)[0]}"  # its endpoint's, kept by SageMaker
    log_groups(stub("logs"), [stopped_logs], [])
    sm.add_response("delete_endpoint_config", {}, {"EndpointConfigName": STOPPED})
    sm.add_response("delete_model", {}, {"ModelName": STOPPED})
    stack_deleted(stub, [stopped_logs], images=101)  # one tag per build: more than one BatchDeleteImage holds
    said: list[str] = []
    teardown(aws, NAME, said.append, poll=0)  # no endpoint runs: no --force; no data: no --delete-data
    assert "deleted 1 endpoint config(s) and 1 model(s)" in said
    assert calls.index("sagemaker.DeleteModel") < calls.index("cloudformation.DeleteStack")
