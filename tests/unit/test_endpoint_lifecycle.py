"""An endpoint's life cycle as the SageMaker API reference describes it, driven through botocore's Stubber
(request shapes checked against the installed service model) for every documented EndpointStatus, read
from that model: first deploy, a failed deploy then a re-publish, a mode change, an instance-type change,
an update SageMaker rolls back, UpdateRollbackFailed, delete of a live and of a missing endpoint."""

from __future__ import annotations

from datetime import datetime

import botocore.session
import pytest
from botocore.stub import ANY
from comfyui_sagemaker.aws import endpoint_states, naming
from comfyui_sagemaker.aws.sagemaker_endpoints import SageMakerEndpoints
from comfyui_sagemaker.core.endpoints import READY_STATES, EndpointBusy, EndpointNotFound, EndpointNotReady
from harness.sagemaker_stub import ENDPOINT, IMAGE, ROLE, STORE, stubbed_endpoints

pytestmark = pytest.mark.stubber

ARN = "arn:aws:sagemaker:us-east-1:123456789012:"
T0 = datetime(2026, 1, 1)


def documented_statuses() -> list[str]:
    model = botocore.session.get_session().get_service_model("sagemaker")
    return list(model.shape_for("EndpointStatus").enum)


def manifest(version=2, mode="async", instance_type="ml.g5.xlarge", scaling=None) -> dict:
    return {"name": "Portraits", "version": version, "endpoint": {
        "kind": "sagemaker", "instance_type": instance_type, "initial_count": 1, "mode": mode,
        "autoscaling": scaling}}


def v(n: int) -> str:
    return f"{ENDPOINT}-v{n}"


class Cloud:
    """The Stubber's expected calls, in the words of the life cycle."""

    def __init__(self, stubs):
        self.sm, self.aas, self.cw = stubs["sagemaker"], stubs["application-autoscaling"], stubs["cloudwatch"]

    def describe(self, status, config=None, reason=None):
        d = {"EndpointName": ENDPOINT, "EndpointArn": ARN + f"endpoint/{ENDPOINT}", "EndpointConfigName":
             config or v(1), "EndpointStatus": status, "CreationTime": T0, "LastModifiedTime": T0,
             "ProductionVariants": [{"VariantName": "AllTraffic", "CurrentInstanceCount": 1}]}
        if reason:
            d["FailureReason"] = reason
        self.sm.add_response("describe_endpoint", d, {"EndpointName": ENDPOINT})

    def gone(self):
        self.sm.add_client_error("describe_endpoint", "ValidationException", f'Could not find endpoint "{ENDPOINT}".',
                                 expected_params={"EndpointName": ENDPOINT})

    def config(self, name, mode="async", instance_type="ml.g5.xlarge"):
        c = {"EndpointConfigName": name, "EndpointConfigArn": ARN + "endpoint-config/" + name, "CreationTime": T0,
             "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": name, "InstanceType": instance_type,
                                     "InitialInstanceCount": 1}]}
        if mode == "async":
            c["AsyncInferenceConfig"] = {"OutputConfig": {"S3OutputPath": f"{STORE}/async/outputs/"}}
        self.sm.add_response("describe_endpoint_config", c, {"EndpointConfigName": name})

    def create_version(self, n, mode="async"):
        self.sm.add_response("create_model", {"ModelArn": ARN + "model/m"},
                             {"ModelName": v(n), "ExecutionRoleArn": ROLE, "PrimaryContainer": ANY, "Tags": ANY})
        config = {"EndpointConfigName": v(n), "ProductionVariants": ANY, "Tags": ANY}
        if mode == "async":
            config["AsyncInferenceConfig"] = ANY
        self.sm.add_response("create_endpoint_config", {"EndpointConfigArn": ARN + "endpoint-config/c"}, config)

    def no_scaling(self):
        dim = {"ServiceNamespace": "sagemaker", "ResourceId": naming.resource_id(ENDPOINT),
               "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"}
        self.aas.add_response("describe_scaling_policies", {"ScalingPolicies": []}, dim)
        self.aas.add_response("describe_scalable_targets", {"ScalableTargets": []},
                              {"ServiceNamespace": "sagemaker", "ResourceIds": [naming.resource_id(ENDPOINT)],
                               "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"})
        self.cw.add_response("delete_alarms", {}, {"AlarmNames": naming.alarm_names(ENDPOINT)})

    def versions(self, *ns):
        self.sm.add_response("list_endpoint_configs", {"EndpointConfigs": [
            {"EndpointConfigName": v(n), "EndpointConfigArn": ARN + "c", "CreationTime": T0} for n in ns]},
            {"NameContains": f"{ENDPOINT}-v"})
        self.sm.add_response("list_models", {"Models": [
            {"ModelName": v(n), "ModelArn": ARN + "m", "CreationTime": T0} for n in ns]},
            {"NameContains": f"{ENDPOINT}-v"})

    def remove_version(self, n):
        self.sm.add_response("delete_endpoint_config", {}, {"EndpointConfigName": v(n)})
        self.sm.add_response("delete_model", {}, {"ModelName": v(n)})


@pytest.fixture
def cloud(aws_env):
    with stubbed_endpoints() as cloud:
        yield cloud.endpoints, Cloud(cloud.stubs), cloud.events, cloud.monitored


def test_every_documented_status_has_a_meaning_here():
    assert set(documented_statuses()) == set(endpoint_states.STATUSES)
    assert set(READY_STATES) == set(endpoint_states.SERVING)
    # An undocumented status (AWS adds one): never ready, never updated into.
    assert not endpoint_states.of("Reticulating").serving and endpoint_states.of("Reticulating").on_deploy == "wait"


@pytest.mark.parametrize("status", [s for s in documented_statuses() if endpoint_states.of(s).on_deploy == "wait"])
def test_a_busy_endpoint_refuses_a_deploy_before_anything_is_created(cloud, status):
    endpoints, aws, events, _ = cloud
    aws.describe(status)
    with pytest.raises(EndpointBusy, match=status):
        endpoints.deploy(manifest())
    assert events == []  # and the Stubber saw no create


@pytest.mark.parametrize("status", ["InService", "UpdateRollbackFailed"])
def test_a_serving_endpoint_is_updated_in_place(cloud, status):
    endpoints, aws, events, monitored = cloud
    aws.describe(status)
    aws.config(v(1))
    aws.create_version(2)
    aws.cw.add_response("put_metric_alarm", {}, None)  # the rollback alarm: tests/unit/test_deploy_guardrails.py
    aws.sm.add_response("update_endpoint", {"EndpointArn": ARN + "e"},
                        {"EndpointName": ENDPOINT, "EndpointConfigName": v(2), "RetainAllVariantProperties": True,
                         "ExcludeRetainedVariantProperties": ANY, "DeploymentConfig": ANY})
    assert endpoints.deploy(manifest())["state"] == "Updating"
    assert monitored[0][2] is False


@pytest.mark.parametrize("status", ["Failed", "OutOfService"])
def test_a_failed_endpoint_is_recreated_on_the_next_publish(cloud, status):
    """DeleteEndpoint is the only operation SageMaker allows on a Failed endpoint."""
    endpoints, aws, events, monitored = cloud
    aws.describe(status, reason="CannotStartContainerError")
    aws.create_version(2)
    aws.no_scaling()
    aws.sm.add_response("delete_endpoint", {}, {"EndpointName": ENDPOINT})
    state = endpoints.deploy(manifest())
    assert state["state"] == "Deleting" and "recreating" in state["reason"] and "CannotStart" in state["reason"]
    m, e, recreate = monitored[0]
    assert recreate
    # The monitor: waits until it is gone, creates it again, follows it to InService.
    aws.describe("Deleting")
    aws.gone()
    aws.sm.add_response("create_endpoint", {"EndpointArn": ARN + "e"},
                        {"EndpointName": ENDPOINT, "EndpointConfigName": v(2), "Tags": ANY})
    aws.describe("Creating", v(2))
    aws.describe("InService", v(2))
    aws.versions(1, 2)  # v1's config and model are kept for a rollback (KEPT_VERSIONS)
    assert endpoints.settle(m, e, recreate=True)["EndpointStatus"] == "InService"
    assert [ev["state"] for ev in events] == ["Deleting", "Creating", "InService"]


def test_switching_async_and_realtime_recreates_the_endpoint(cloud):
    endpoints, aws, _, monitored = cloud
    aws.describe("InService")
    aws.config(v(1), mode="async")
    aws.create_version(2, mode="realtime")
    aws.no_scaling()
    aws.sm.add_response("delete_endpoint", {}, {"EndpointName": ENDPOINT})
    state = endpoints.deploy(manifest(mode="realtime"))
    assert state["state"] == "Deleting" and "async and real-time" in state["reason"] and monitored[0][2]


def test_an_update_sagemaker_rolled_back_is_reported_and_only_the_new_version_removed(cloud):
    """A failed update comes back InService, on the OLD config, with a FailureReason: not a success."""
    endpoints, aws, events, _ = cloud
    aws.describe("Updating", v(1))
    aws.describe("InService", v(1), reason="The primary container for production variant AllTraffic did not "
                 "pass the ping health check.")
    aws.remove_version(2)
    d = endpoints.settle(manifest(), ENDPOINT)
    assert d["EndpointConfigName"] == v(1)
    last = events[-1]
    assert last["state"] == "InService" and last["version"] == 1
    assert "version 2 did not deploy" in last["reason"] and "ping health check" in last["reason"]


def test_update_rollback_failed_is_settled_and_still_serves(cloud):
    endpoints, aws, events, _ = cloud
    aws.describe("UpdateRollbackFailed", v(2), reason="mixed")
    aws.versions(1, 2)  # v1 is kept for a rollback (KEPT_VERSIONS): nothing removed
    assert endpoints.settle(manifest(), ENDPOINT)["EndpointStatus"] == "UpdateRollbackFailed"
    aws.describe("UpdateRollbackFailed", v(2))
    assert endpoints.check_ready("Portraits")["state"] == "UpdateRollbackFailed"


@pytest.mark.parametrize("status", documented_statuses())
def test_invocations_follow_the_documented_serving_states(cloud, status):
    endpoints, aws, _, _ = cloud
    aws.describe(status)
    if endpoint_states.of(status).serving:
        endpoints.check_ready("Portraits")
    else:
        with pytest.raises(EndpointNotReady):
            endpoints.check_ready("Portraits")


def test_delete_of_a_live_endpoint_removes_configs_and_models_only_once_it_is_gone(cloud):
    endpoints, aws, events, _ = cloud
    aws.describe("InService", v(2))
    aws.no_scaling()
    aws.sm.add_response("delete_endpoint", {}, {"EndpointName": ENDPOINT})
    aws.describe("Deleting", v(2))  # the clean-up waits: v2 is still the live endpoint's config
    aws.gone()
    aws.versions(1, 2)
    aws.remove_version(1)
    aws.remove_version(2)
    endpoints.delete("Portraits")
    assert [e["state"] for e in events] == ["Deleting", "Deleted"]


def test_delete_of_a_missing_endpoint_removes_leftovers_and_says_so(cloud):
    endpoints, aws, _, _ = cloud
    aws.gone()
    aws.no_scaling()
    aws.versions(3)
    aws.remove_version(3)
    with pytest.raises(EndpointNotFound, match="leftovers were removed"):
        endpoints.delete("Portraits")


def test_delete_refused_by_sagemaker_is_said_and_nothing_else_is_removed(cloud):
    """Only 'Could not find endpoint' means gone; any other ValidationException is a refusal."""
    endpoints, aws, events, _ = cloud
    aws.describe("Creating", v(1))
    aws.no_scaling()
    aws.sm.add_client_error("delete_endpoint", "ValidationException",
                            f"Cannot delete endpoint {ENDPOINT} while it is being created.",
                            expected_params={"EndpointName": ENDPOINT})
    with pytest.raises(EndpointBusy, match="refused"):
        endpoints.delete("Portraits")
    assert events == []


def test_delete_during_maintenance_is_refused_before_any_call(cloud):
    endpoints, aws, events, _ = cloud
    aws.describe("SystemUpdating")
    with pytest.raises(EndpointBusy, match="SystemUpdating"):
        endpoints.delete("Portraits")


def test_autoscaling_that_fails_is_a_warning_on_the_endpoint_not_lost(cloud):
    endpoints, aws, events, _ = cloud
    aws.describe("InService", v(2))
    aws.aas.add_client_error("register_scalable_target", "AccessDeniedException",
                             "User is not authorized to perform: iam:CreateServiceLinkedRole")
    aws.versions(2)
    endpoints.settle(manifest(scaling={"min": 0, "max": 2}), ENDPOINT)
    warning = events[-1]["warning"]
    assert "autoscaling was not set up" in warning and "CreateServiceLinkedRole" in warning


def test_sse_kms_reaches_the_worker_and_the_async_results(aws_env):
    endpoints = SageMakerEndpoints(STORE, ROLE, IMAGE, "us-east-1", sse="aws:kms", kms_key_id="alias/comfy")
    output = endpoints.endpoint_config_request(manifest())["AsyncInferenceConfig"]["OutputConfig"]
    assert output["KmsKeyId"] == "alias/comfy"
    env = endpoints.model_request(manifest())["PrimaryContainer"]["Environment"]
    assert env["WORKER_S3_SSE"] == "aws:kms" and env["WORKER_S3_KMS_KEY_ID"] == "alias/comfy"
    plain = SageMakerEndpoints(STORE, ROLE, IMAGE, "us-east-1").model_request(manifest())
    assert "WORKER_S3_SSE" not in plain["PrimaryContainer"]["Environment"]


def test_the_worker_stops_a_realtime_run_when_sagemaker_gives_up(aws_env):
    endpoints = SageMakerEndpoints(STORE, ROLE, IMAGE, "us-east-1")
    timeout = {mode: endpoints.model_request(manifest(mode=mode))["PrimaryContainer"]["Environment"][
        "WORKER_INVOCATION_TIMEOUT"] for mode in ("realtime", "async")}
    assert timeout == {"realtime": "60", "async": "3600"}


def test_the_workers_store_writes_with_the_stores_encryption(monkeypatch):
    from comfyui_sagemaker.stores import split_manifest_uri

    monkeypatch.setenv("WORKER_S3_SSE", "aws:kms")
    monkeypatch.setenv("WORKER_S3_KMS_KEY_ID", "alias/comfy")
    store, key = split_manifest_uri(f"{STORE}/environments/portraits/versions/v000001.json")
    assert store.write_args["ServerSideEncryption"] == "aws:kms" and store.write_args["SSEKMSKeyId"] == "alias/comfy"
    assert key == "environments/portraits/versions/v000001.json"
