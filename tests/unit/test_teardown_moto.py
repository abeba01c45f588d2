"""`aws teardown` end to end on moto (in process): the stack as `aws setup` makes it, a live endpoint
and a stopped one's kept config and model, and the log groups SageMaker made for them. Moto accepts any
order of calls, so the order is held by tests/unit/test_teardown.py (Stubber); this holds what is left
afterwards."""

from __future__ import annotations

import boto3
import pytest
from comfyui_sagemaker.aws import naming
from comfyui_sagemaker.aws.setup import Aws, SetupError, ensure_stack, outputs, upload_source
from comfyui_sagemaker.aws.teardown import teardown

moto = pytest.importorskip("moto")

NAME = "td-moto"
OTHER_LOGS = "/aws/sagemaker/Endpoints/cs-portraits-0badf00d"


def ours(store: str) -> list[str]:
    """The live and the stopped endpoint's groups. (Moto's CloudFormation makes no CodeBuild project, so the
    stack has no BuildProject output here: the build's group, a stack resource, goes with the stack; its
    removal by name is held by tests/unit/test_teardown.py.)"""
    return [f"/aws/sagemaker/Endpoints/{naming.endpoint_name(e, store)}" for e in ("Portraits", "Sketches")]


def groups(aws) -> list[str]:
    return [g["logGroupName"] for g in aws("logs").describe_log_groups()["logGroups"]]


@pytest.fixture
def made(aws_env):
    with moto.mock_aws():
        aws = Aws("us-east-1", lambda service: boto3.client(service, region_name="us-east-1"))
        out = outputs(ensure_stack(aws, NAME, {}, print, poll=0))
        store = f"s3://{out['StoreBucket']}/{out['StorePrefix']}"
        upload_source(aws, out["StoreBucket"], out["StorePrefix"], print)
        sm = aws("sagemaker")
        for env, live in (("Portraits", True), ("Sketches", False)):  # Sketches is stopped: no endpoint
            version = naming.versioned_name(env, 1, store)
            tags = naming.tags(env, 1, store)
            sm.create_model(ModelName=version, ExecutionRoleArn=out["SageMakerRoleArn"], Tags=tags,
                            PrimaryContainer={"Image": f"{out['RepositoryUri']}@sha256:{64 * 'a'}"})
            sm.create_endpoint_config(EndpointConfigName=version, Tags=tags, ProductionVariants=[{
                "VariantName": naming.VARIANT, "ModelName": version, "InstanceType": "ml.g4dn.xlarge",
                "InitialInstanceCount": 1}])
            if live:
                sm.create_endpoint(EndpointName=naming.endpoint_name(env, store), EndpointConfigName=version,
                                   Tags=naming.tags(env, None, store))
        # What SageMaker logs to (moto makes no groups by itself), and another store's endpoint's.
        for group in (*ours(store), OTHER_LOGS):
            aws("logs").create_log_group(logGroupName=group)
        yield aws, out


def test_teardown_removes_live_and_stopped_endpoints_and_a_bucket_holding_only_the_source(made):
    aws, out = made
    sm = aws("sagemaker")
    teardown(aws, NAME, print, force=True, poll=0)  # only the source zip in the bucket: no --delete-data
    assert sm.list_endpoints()["Endpoints"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == [] and sm.list_models()["Models"] == []
    assert out["StoreBucket"] not in [b["Name"] for b in aws("s3").list_buckets()["Buckets"]]
    assert groups(aws) == [OTHER_LOGS]  # the endpoints' went (live and stopped), another store's stays


def test_data_refuses_and_leaves_everything_in_place(made):
    aws, out = made
    aws("s3").put_object(Bucket=out["StoreBucket"], Key=f"{out['StorePrefix']}/templates/t.json", Body=b"{}")
    with pytest.raises(SetupError, match="still holds objects.*nothing was deleted"):
        teardown(aws, NAME, print, force=True, poll=0)
    sm = aws("sagemaker")
    assert len(sm.list_endpoints()["Endpoints"]) == 1 and len(sm.list_models()["Models"]) == 2
    assert len(groups(aws)) == 4  # the build's (a stack resource), the two endpoints', another store's
    teardown(aws, NAME, print, force=True, delete_data=True, poll=0)
    assert sm.list_endpoints()["Endpoints"] == [] and sm.list_models()["Models"] == []
