"""SageMaker endpoints: the exact requests (botocore's Stubber) and the lifecycle on moto."""

from datetime import datetime

import boto3
import pytest
from botocore.stub import ANY, Stubber
from comfyui_sagemaker.aws import naming
from comfyui_sagemaker.aws.errors import AwsNotConfigured, InstanceTypeRefused, QuotaExceeded
from comfyui_sagemaker.aws.runtime import takes_inline
from comfyui_sagemaker.aws.sagemaker_endpoints import STARTUP_HEALTH_CHECK_S, SageMakerEndpoints
from comfyui_sagemaker.core.endpoints import EndpointNotFound
from harness.sagemaker_stub import ENDPOINT, IMAGE, ROLE, STORE, stubbed_endpoints
from harness.service_quotas import answering

ARN = "arn:aws:sagemaker:us-east-1:123456789012:"
RID = f"endpoint/{ENDPOINT}/variant/AllTraffic"
DIM = {
    "ServiceNamespace": "sagemaker",
    "ResourceId": RID,
    "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
}
POLICY_ARN = "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:0000:resource/sagemaker/x:policyName/"


def manifest(version=1, instance_type="ml.g4dn.xlarge", mode="async", scaling=None):
    return {
        "name": "Portraits",
        "version": version,
        "custom_nodes": [],
        "models": [],
        "endpoint": {
            "kind": "sagemaker",
            "instance_type": instance_type,
            "initial_count": 1,
            "mode": mode,
            "autoscaling": scaling,
        },
    }


def test_names_are_short_lowercase_and_store_specific():
    assert ENDPOINT == f"cs-portraits-{naming.store_digest(STORE)}"
    assert naming.endpoint_name("Portraits", "s3://other/x") != ENDPOINT
    longest = naming.versioned_name("A" * 20, 999999, STORE)
    assert len(longest) <= 63 and longest == longest.lower()


@pytest.fixture
def stubbed(aws_env):
    with stubbed_endpoints() as cloud:  # the tests drive settle() themselves
        yield cloud.endpoints, cloud.stubs, cloud.events


def not_found(stub, name=ENDPOINT):
    stub.add_client_error(
        "describe_endpoint",
        "ValidationException",
        f'Could not find endpoint "{name}".',
        expected_params={"EndpointName": name},
    )


def described(status, config="cs-x-v1", reason=None, count=1):
    d = {
        "EndpointName": ENDPOINT,
        "EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{ENDPOINT}",
        "EndpointConfigName": config,
        "EndpointStatus": status,
        "CreationTime": datetime(2026, 1, 1),
        "LastModifiedTime": datetime(2026, 1, 1),
        "ProductionVariants": [{"VariantName": "AllTraffic", "CurrentInstanceCount": count}],
    }
    if reason:
        d["FailureReason"] = reason
    return d


@pytest.mark.stubber
def test_create_async_with_scale_to_zero_sends_exactly_these_requests(stubbed):
    endpoints, stubs, events = stubbed
    sm, aas, cw = stubs["sagemaker"], stubs["application-autoscaling"], stubs["cloudwatch"]
    v1 = f"{ENDPOINT}-v1"
    tags = [
        {"Key": naming.TAG_STORE, "Value": naming.store_digest(STORE)},
        {"Key": naming.TAG_ENVIRONMENT, "Value": "Portraits"},
        {"Key": naming.TAG_VERSION, "Value": "1"},
    ]
    not_found(sm)  # a new endpoint
    sm.add_response(
        "create_model",
        {"ModelArn": ARN + "model/m"},
        {
            "ModelName": v1,
            "ExecutionRoleArn": ROLE,
            "Tags": tags,
            "PrimaryContainer": {
                "Image": IMAGE,
                "Environment": {
                    "SAGEMAKER_MANIFEST_URI": f"{STORE}/environments/portraits/versions/v000001.json",
                    "WORKER_MODELS": "eager",
                    "WORKER_INVOCATION_TIMEOUT": "3600",
                    "WORKER_REPORT": "store",
                },
            },
        },
    )
    sm.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": ARN + "endpoint-config/c"},
        {
            "EndpointConfigName": v1,
            "Tags": tags,
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": v1,
                    "InstanceType": "ml.g4dn.xlarge",
                    "InitialInstanceCount": 1,
                    "ContainerStartupHealthCheckTimeoutInSeconds": STARTUP_HEALTH_CHECK_S,
                    "InferenceAmiVersion": "al2-ami-sagemaker-inference-gpu-3-1",
                }
            ],
            "AsyncInferenceConfig": {
                "OutputConfig": {
                    "S3OutputPath": f"{STORE}/async/outputs/",
                    "S3FailurePath": f"{STORE}/async/failures/",
                },
                "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 1},
            },
        },
    )
    sm.add_response(
        "create_endpoint",
        {"EndpointArn": ARN + "endpoint/e"},
        {"EndpointName": ENDPOINT, "EndpointConfigName": v1, "Tags": tags[:2]},
    )
    state = endpoints.deploy(manifest(scaling={"min": 0, "max": 2}))
    assert state["state"] == "Creating" and events[-1]["state"] == "Creating"

    # settle: Creating -> InService, then autoscaling and clean-up of older versions
    sm.add_response("describe_endpoint", described("Creating", v1), {"EndpointName": ENDPOINT})
    sm.add_response("describe_endpoint", described("InService", v1), {"EndpointName": ENDPOINT})
    dim = DIM
    aas.add_response("register_scalable_target", {}, {**dim, "MinCapacity": 0, "MaxCapacity": 2})
    aas.add_response(
        "put_scaling_policy",
        {"PolicyARN": POLICY_ARN + "tracking"},
        {
            **dim,
            "PolicyName": "comfyui-sagemaker-target-tracking",
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": 2.0,
                "DisableScaleIn": True,  # the idle policy scales in (aws/autoscaling.py)
                "ScaleOutCooldown": 60,
                "CustomizedMetricSpecification": {
                    "MetricName": "ApproximateBacklogSizePerInstance",
                    "Namespace": "AWS/SageMaker",
                    "Dimensions": [{"Name": "EndpointName", "Value": ENDPOINT}],
                    "Statistic": "Average",
                },
            },
        },
    )
    aas.add_response(
        "put_scaling_policy",
        {"PolicyARN": POLICY_ARN + "idle"},
        {
            **dim,
            "PolicyName": "comfyui-sagemaker-scale-in-when-idle",
            "PolicyType": "StepScaling",
            "StepScalingPolicyConfiguration": {
                "AdjustmentType": "ExactCapacity",
                "MetricAggregationType": "Maximum",
                "Cooldown": 60,
                "StepAdjustments": [{"MetricIntervalUpperBound": 0, "ScalingAdjustment": 0}],
            },
        },
    )
    cw.add_response(
        "put_metric_alarm",
        {},
        {
            "AlarmName": f"{ENDPOINT}-idle",
            "MetricName": "ApproximateBacklogSize",
            "Namespace": "AWS/SageMaker",
            "Dimensions": [{"Name": "EndpointName", "Value": ENDPOINT}],
            "Statistic": "Maximum",
            "Period": 60,
            "EvaluationPeriods": 5,
            "DatapointsToAlarm": 5,
            "Threshold": 0.5,
            "ComparisonOperator": "LessThanThreshold",
            "TreatMissingData": "breaching",
            "AlarmActions": [POLICY_ARN + "idle"],
        },
    )
    aas.add_response(
        "put_scaling_policy",
        {"PolicyARN": POLICY_ARN + "step"},
        {
            **dim,
            "PolicyName": "comfyui-sagemaker-scale-out-from-zero",
            "PolicyType": "StepScaling",
            "StepScalingPolicyConfiguration": {
                "AdjustmentType": "ChangeInCapacity",
                "MetricAggregationType": "Maximum",
                "Cooldown": 300,
                "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}],
            },
        },
    )
    cw.add_response(
        "put_metric_alarm",
        {},
        {
            "AlarmName": f"{ENDPOINT}-has-backlog-without-capacity",
            "MetricName": "HasBacklogWithoutCapacity",
            "Namespace": "AWS/SageMaker",
            "Dimensions": [{"Name": "EndpointName", "Value": ENDPOINT}],
            "Statistic": "Average",
            "Period": 60,
            "EvaluationPeriods": 1,
            "DatapointsToAlarm": 1,
            "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": "missing",
            "AlarmActions": [POLICY_ARN + "step"],
        },
    )
    sm.add_response(
        "list_endpoint_configs",
        {
            "EndpointConfigs": [
                {
                    "EndpointConfigName": v1,
                    "EndpointConfigArn": ARN + "endpoint-config/a",
                    "CreationTime": datetime(2026, 1, 1),
                }
            ]
        },
        {"NameContains": f"{ENDPOINT}-v"},
    )
    sm.add_response(
        "list_models",
        {"Models": [{"ModelName": v1, "ModelArn": ARN + "model/a", "CreationTime": datetime(2026, 1, 1)}]},
        {"NameContains": f"{ENDPOINT}-v"},
    )
    assert endpoints.settle(manifest(scaling={"min": 0, "max": 2}), ENDPOINT)["EndpointStatus"] == "InService"
    assert [e["state"] for e in events] == ["Creating", "Creating", "InService"]


@pytest.mark.stubber
def test_update_changing_instance_type_deregisters_autoscaling_first(stubbed):
    endpoints, stubs, events = stubbed
    sm, aas, cw = stubs["sagemaker"], stubs["application-autoscaling"], stubs["cloudwatch"]
    sm.add_response("describe_endpoint", described("InService", f"{ENDPOINT}-v1"), {"EndpointName": ENDPOINT})
    sm.add_response(
        "describe_endpoint_config",
        {
            "EndpointConfigName": f"{ENDPOINT}-v1",
            "EndpointConfigArn": ARN + "endpoint-config/c",
            "CreationTime": datetime(2026, 1, 1),
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": "m",
                    "InstanceType": "ml.g4dn.xlarge",
                    "InitialInstanceCount": 1,
                }
            ],
        },
        {"EndpointConfigName": f"{ENDPOINT}-v1"},
    )
    sm.add_response("create_model", {"ModelArn": ARN + "model/m"}, None)
    sm.add_response("create_endpoint_config", {"EndpointConfigArn": ARN + "endpoint-config/c"}, None)
    dim = DIM
    aas.add_response(
        "describe_scaling_policies",
        {
            "ScalingPolicies": [
                {
                    "PolicyARN": POLICY_ARN + "p",
                    "PolicyName": "comfyui-sagemaker-target-tracking",
                    "ServiceNamespace": "sagemaker",
                    "ResourceId": RID,
                    "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
                    "PolicyType": "TargetTrackingScaling",
                    "CreationTime": datetime(2026, 1, 1),
                }
            ]
        },
        dim,
    )
    aas.add_response("delete_scaling_policy", {}, {**dim, "PolicyName": "comfyui-sagemaker-target-tracking"})
    aas.add_response(
        "describe_scalable_targets",
        {
            "ScalableTargets": [
                {
                    **DIM,
                    "MinCapacity": 1,
                    "MaxCapacity": 2,
                    "RoleARN": "arn:aws:iam::123456789012:role/aas",
                    "CreationTime": datetime(2026, 1, 1),
                }
            ]
        },
        {
            "ServiceNamespace": "sagemaker",
            "ResourceIds": [RID],
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        },
    )
    aas.add_response("deregister_scalable_target", {}, dim)
    cw.add_response("delete_alarms", {}, {"AlarmNames": [f"{ENDPOINT}-has-backlog-without-capacity",
                                                         f"{ENDPOINT}-idle", f"{ENDPOINT}-errors"]})
    cw.add_response("put_metric_alarm", {}, None)  # the rollback alarm: tests/unit/test_deploy_guardrails.py
    sm.add_response(
        "update_endpoint",
        {"EndpointArn": ARN + "endpoint/e"},
        {"EndpointName": ENDPOINT, "EndpointConfigName": f"{ENDPOINT}-v2", "RetainAllVariantProperties": True,
         "ExcludeRetainedVariantProperties": ANY, "DeploymentConfig": ANY},
    )
    state = endpoints.deploy(manifest(version=2, instance_type="ml.g5.xlarge", mode="realtime"))
    assert state["state"] == "Updating"
    # Once InService: autoscaling comes back; version 1's config and model are kept (KEPT_VERSIONS, for a
    # rollback: tests/unit/test_sagemaker_rollback.py).
    v1, v2 = f"{ENDPOINT}-v1", f"{ENDPOINT}-v2"
    sm.add_response("describe_endpoint", described("InService", v2), {"EndpointName": ENDPOINT})
    sm.add_response(
        "list_endpoint_configs",
        {
            "EndpointConfigs": [
                {
                    "EndpointConfigName": n,
                    "EndpointConfigArn": ARN + "endpoint-config/" + n,
                    "CreationTime": datetime(2026, 1, 1),
                }
                for n in (v1, v2)
            ]
        },
        {"NameContains": f"{ENDPOINT}-v"},
    )
    sm.add_response(
        "list_models",
        {
            "Models": [
                {"ModelName": n, "ModelArn": ARN + "model/" + n, "CreationTime": datetime(2026, 1, 1)} for n in (v1, v2)
            ]
        },
        {"NameContains": f"{ENDPOINT}-v"},
    )
    endpoints.settle(manifest(version=2, instance_type="ml.g5.xlarge", mode="realtime"), ENDPOINT)


@pytest.mark.stubber
def test_failed_creation_reports_sagemakers_reason(stubbed):
    endpoints, stubs, events = stubbed
    stubs["sagemaker"].add_response(
        "describe_endpoint", described("Failed", reason="Image does not exist"), {"EndpointName": ENDPOINT}
    )
    assert endpoints.settle(manifest(), ENDPOINT)["EndpointStatus"] == "Failed"
    assert events[-1]["state"] == "Failed" and events[-1]["reason"] == "Image does not exist"


@pytest.mark.stubber
@pytest.mark.parametrize(
    "code, message, exc",
    [
        (
            "ResourceLimitExceeded",
            "The account-level service limit 'ml.g5.xlarge for endpoint usage' is 0 Instances",
            QuotaExceeded,
        ),
        ("ValidationException", "Invalid value for instance type 'ml.g9.huge'", InstanceTypeRefused),
    ],
)
def test_aws_refusals_become_clear_errors(stubbed, code, message, exc):
    endpoints, stubs, _ = stubbed
    not_found(stubs["sagemaker"])
    stubs["sagemaker"].add_client_error("create_model", code, message, http_status_code=400)
    with pytest.raises(exc) as err:
        endpoints.deploy(manifest())
    assert message in err.value.message
    if exc is QuotaExceeded:
        assert "ml.g5.xlarge for endpoint usage" in err.value.message and "Service Quotas" in err.value.message


@pytest.mark.stubber
@pytest.mark.parametrize(
    "role, image, store, needle",
    [
        ("not-an-arn", IMAGE, STORE, "not an IAM role ARN"),
        ("arn:aws:iam::12345:role/x", IMAGE, STORE, "not an IAM role ARN"),
        (ROLE, "", STORE, "worker_image_uri"),
        (ROLE, IMAGE, "file:///tmp/store", "set store to s3"),
    ],
)
def test_configuration_is_checked_before_any_call(aws_env, role, image, store, needle):
    endpoints = SageMakerEndpoints(store, role, image, "us-east-1", clients={"sagemaker": object()})
    with pytest.raises(AwsNotConfigured, match=needle):
        endpoints.deploy(manifest())


@pytest.mark.slow  # an endpoint's whole life on moto (seconds): the whole suite runs it, the fast tier does not
def test_lifecycle_on_moto(aws_env):
    from moto import mock_aws

    with mock_aws():
        events = []
        endpoints = SageMakerEndpoints(STORE, ROLE, IMAGE, "us-east-1", events.append, poll_interval=0,
                                       clients={"service-quotas": answering("ml.g4dn.xlarge")})
        endpoints.monitor = lambda m, e, recreate=False: endpoints.settle(m, e, recreate=recreate)
        endpoints.in_background = lambda fn, name: fn()  # moto is InService at once
        endpoints.deploy(manifest(scaling={"min": 0, "max": 2}))
        listed = endpoints.list()
        assert [(e["name"], e["state"]) for e in listed] == [("Portraits", "InService")]
        assert listed[0]["instances"] == 1
        sm = boto3.client("sagemaker", region_name="us-east-1")
        cw = boto3.client("cloudwatch", region_name="us-east-1")
        aas = boto3.client("application-autoscaling", region_name="us-east-1")
        config = sm.describe_endpoint_config(EndpointConfigName=f"{ENDPOINT}-v1")
        assert config["AsyncInferenceConfig"]["OutputConfig"]["S3OutputPath"] == f"{STORE}/async/outputs/"
        assert aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"][0]["MinCapacity"] == 0
        assert {a["MetricName"] for a in cw.describe_alarms()["MetricAlarms"]} == {
            "HasBacklogWithoutCapacity", "ApproximateBacklogSize"}
        # Another store's endpoint in the same account is not ours.
        other = SageMakerEndpoints("s3://other-bucket/x", ROLE, IMAGE, "us-east-1", poll_interval=0)
        assert other.list() == []
        # (moto has no UpdateEndpoint: the in-place update is checked with the Stubber above.)
        # Deleted behind the extension's back: gone here too, at the next look.
        sm.delete_endpoint(EndpointName=ENDPOINT)
        with pytest.raises(EndpointNotFound):
            endpoints.get("Portraits")
        assert endpoints.list() == []
        # Delete cleans up what is left (configs, models, scaling, alarm) and is idempotent.
        with pytest.raises(EndpointNotFound):
            endpoints.delete("Portraits")
        assert sm.list_endpoint_configs()["EndpointConfigs"] == [] and sm.list_models()["Models"] == []
        assert aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
        assert cw.describe_alarms()["MetricAlarms"] == []


def test_an_async_run_on_an_endpoint_scaled_to_zero_says_it_waits_for_an_instance(aws_env):
    import json

    from comfyui_sagemaker.aws.s3_store import S3Store
    from moto import mock_aws

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="team-bucket")
        store = S3Store("team-bucket", "comfy", s3_client=s3)
        endpoints = SageMakerEndpoints(STORE, ROLE, IMAGE, "us-east-1", poll_interval=0, store=store,
                                       clients={"service-quotas": answering("ml.g4dn.xlarge")})
        endpoints.monitor = lambda m, e, recreate=False: None
        endpoints.deploy(manifest(scaling={"min": 0, "max": 2}))
        endpoints.get = lambda name: {**SageMakerEndpoints.get(endpoints, name), "instances": 0}

        runtime = boto3.client("sagemaker-runtime", region_name="us-east-1")
        endpoints._clients["sagemaker-runtime"] = runtime
        s3.put_object(Bucket="team-bucket", Key="comfy/async/outputs/x.out",
                      Body=json.dumps({"status": "succeeded", "outputs": {}}).encode())
        events = []
        with Stubber(runtime) as stub:
            stub.add_response("invoke_endpoint_async", {
                "InferenceId": "x", "OutputLocation": "s3://team-bucket/comfy/async/outputs/x.out",
                "FailureLocation": "s3://team-bucket/comfy/async/failures/x-error.out"}, {
                "EndpointName": ENDPOINT, "ContentType": "application/json", "Accept": "application/json",
                "InferenceId": "x", "InvocationTimeoutSeconds": 3600, "RequestTTLSeconds": 3900,
                **({"Body": ANY} if takes_inline(runtime) else {"InputLocation": f"{STORE}/async/requests/x.json"})})
            result = endpoints.invoke("Portraits", {"execution_id": "x", "prompt": {}}, events.append)
        assert result["status"] == "succeeded"
        assert events[0]["type"] == "sagemaker.note" and "waiting for an instance" in events[0]["data"]["message"]


def test_the_view_says_the_instance_type_the_serving_version_asked_for(aws_env):
    """DescribeEndpoint does not carry the instance type: the view takes it from the serving version's
    manifest in the store, read once (a manifest never changes)."""
    import json

    from comfyui_sagemaker.aws.s3_store import S3Store
    from comfyui_sagemaker.core.environments import manifest_key
    from moto import mock_aws

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="team-bucket")
        store = S3Store("team-bucket", "comfy", s3_client=s3)
        deployed = manifest(instance_type="ml.g4dn.12xlarge")
        store.create(manifest_key("Portraits", 1), json.dumps(deployed).encode())
        endpoints = SageMakerEndpoints(STORE, ROLE, IMAGE, "us-east-1", poll_interval=0, store=store,
                                       clients={"service-quotas": answering("ml.g4dn.12xlarge")})
        endpoints.monitor = lambda m, e, recreate=False: None
        endpoints.deploy(deployed)
        assert endpoints.get("Portraits")["instance_type"] == "ml.g4dn.12xlarge"
        s3.delete_object(Bucket="team-bucket", Key="comfy/" + manifest_key("Portraits", 1))
        assert endpoints.list()[0]["instance_type"] == "ml.g4dn.12xlarge"  # kept: no read per look
        # Without a store (or its manifest), the endpoint still shows, without the type.
        bare = SageMakerEndpoints(STORE, ROLE, IMAGE, "us-east-1", poll_interval=0)
        assert bare.get("Portraits")["instance_type"] is None
