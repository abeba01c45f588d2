"""Updates without a second fleet (issue 30): the exact UpdateEndpoint request (RetainAllVariantProperties,
the DeploymentConfig, the rollback alarm), the instance type's quota checked before anything is created, and an
update SageMaker rolled back on the alarm reported as such. Through botocore's Stubber: every request is
checked against the installed service model before the Stubber answers."""

from __future__ import annotations

import json
from datetime import datetime

import botocore.session
import pytest
from botocore.stub import ANY
from botocore.validate import ParamValidator
from comfyui_sagemaker.aws import deploy_guardrails, naming
from comfyui_sagemaker.aws.errors import QuotaExceeded
from comfyui_sagemaker.aws.sagemaker_endpoints import STARTUP_HEALTH_CHECK_S
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.sagemaker_stub import ENDPOINT, ROLE, STORE, stubbed_endpoints
from harness.service_quotas import listed
from harness.service_quotas import quota as service_quota

pytestmark = pytest.mark.stubber

ALARM = f"{ENDPOINT}-errors"
ARN = "arn:aws:sagemaker:us-east-1:123456789012:"
T0 = datetime(2026, 1, 1)
TYPE = "ml.g5.xlarge"


def v(n: int) -> str:
    return f"{ENDPOINT}-v{n}"


def manifest(version=2, mode="async", instance_type=TYPE, initial=1, scaling=None) -> dict:
    return {"name": "Portraits", "version": version, "endpoint": {
        "kind": "sagemaker", "instance_type": instance_type, "initial_count": initial, "mode": mode,
        "autoscaling": scaling}}


@pytest.fixture
def cloud(aws_env):
    with stubbed_endpoints() as cloud:
        yield cloud.endpoints, cloud.stubs, cloud.events


def running(sm, count, instance_type=TYPE, mode="async", status="InService", config=None):
    """DescribeEndpoint and the serving version's DescribeEndpointConfig, as a deploy reads them first."""
    sm.add_response("describe_endpoint", {
        "EndpointName": ENDPOINT, "EndpointArn": ARN + f"endpoint/{ENDPOINT}", "EndpointConfigName": config or v(1),
        "EndpointStatus": status, "CreationTime": T0, "LastModifiedTime": T0,
        "ProductionVariants": [{"VariantName": "AllTraffic", "CurrentInstanceCount": count}]},
        {"EndpointName": ENDPOINT})
    c = {"EndpointConfigName": v(1), "EndpointConfigArn": ARN + "endpoint-config/c", "CreationTime": T0,
         "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": v(1), "InstanceType": instance_type,
                                 "InitialInstanceCount": 1}]}
    if mode == "async":
        c["AsyncInferenceConfig"] = {"OutputConfig": {"S3OutputPath": f"{STORE}/async/outputs/"}}
    sm.add_response("describe_endpoint_config", c, {"EndpointConfigName": v(1)})


def quota(sq, value, instance_type=TYPE):
    listed(sq, [service_quota("ml.g4dn.xlarge", 9, "L-1"), service_quota(instance_type, value, "L-2")])


def new_version(sm, n=2):
    sm.add_response("create_model", {"ModelArn": ARN + "model/m"},
                    {"ModelName": v(n), "ExecutionRoleArn": ROLE, "PrimaryContainer": ANY, "Tags": ANY})
    sm.add_response("create_endpoint_config", {"EndpointConfigArn": ARN + "endpoint-config/c"},
                    {"EndpointConfigName": v(n), "ProductionVariants": ANY, "Tags": ANY, "AsyncInferenceConfig": ANY})


ERRORS_ALARM = {
    "AlarmName": ALARM, "AlarmDescription": ANY, "Namespace": "AWS/SageMaker", "MetricName": "Invocation5XXErrors",
    "Dimensions": [{"Name": "EndpointName", "Value": ENDPOINT}, {"Name": "VariantName", "Value": "AllTraffic"}],
    "Statistic": "Average", "Period": 60, "EvaluationPeriods": 3, "DatapointsToAlarm": 2, "Threshold": 0.25,
    "ComparisonOperator": "GreaterThanThreshold", "TreatMissingData": "notBreaching"}
ROLLBACK = {"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": ALARM}]}}


def test_an_autoscaled_fleet_is_updated_in_rolling_batches_of_one_keeping_its_count(cloud):
    endpoints, stubs, events = cloud
    sm, cw, sq = stubs["sagemaker"], stubs["cloudwatch"], stubs["service-quotas"]
    running(sm, 3)
    quota(sq, 4)  # 3 running + a batch of 1
    new_version(sm)
    cw.add_response("put_metric_alarm", {}, ERRORS_ALARM)
    batch = {"Type": "INSTANCE_COUNT", "Value": 1}
    sm.add_response("update_endpoint", {"EndpointArn": ARN + "e"}, {
        "EndpointName": ENDPOINT, "EndpointConfigName": v(2), "RetainAllVariantProperties": True,
        "DeploymentConfig": {"RollingUpdatePolicy": {
            "MaximumBatchSize": batch, "WaitIntervalInSeconds": 300,
            "MaximumExecutionTimeoutInSeconds": 3 * (STARTUP_HEALTH_CHECK_S + 300),
            "RollbackMaximumBatchSize": batch}, **ROLLBACK}})
    state = endpoints.deploy(manifest(scaling={"min": 1, "max": 4}))
    assert state["state"] == "Updating" and not state.get("warning")


def test_an_endpoint_scaled_to_zero_stays_at_zero_blue_green_all_at_once(cloud):
    """0 instances: no rolling batch exists (5% to 50% of the fleet); the new fleet is as large as the old, 0."""
    endpoints, stubs, _ = cloud
    sm, cw, sq = stubs["sagemaker"], stubs["cloudwatch"], stubs["service-quotas"]
    running(sm, 0)
    quota(sq, 0)  # nothing runs, nothing is added: even a quota of 0 holds this update
    new_version(sm)
    cw.add_response("put_metric_alarm", {}, ERRORS_ALARM)
    sm.add_response("update_endpoint", {"EndpointArn": ARN + "e"}, {
        "EndpointName": ENDPOINT, "EndpointConfigName": v(2), "RetainAllVariantProperties": True,
        "DeploymentConfig": {"BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 300},
            "TerminationWaitInSeconds": 0, "MaximumExecutionTimeoutInSeconds": STARTUP_HEALTH_CHECK_S + 300},
            **ROLLBACK}})
    assert endpoints.deploy(manifest(scaling={"min": 0, "max": 2}))["state"] == "Updating"


def test_an_always_on_fleet_takes_the_new_versions_count(cloud):
    """autoscaling null: the count is the designer's choice, so the new config's InitialInstanceCount applies."""
    endpoints, stubs, _ = cloud
    sm, cw, sq = stubs["sagemaker"], stubs["cloudwatch"], stubs["service-quotas"]
    running(sm, 1)
    quota(sq, 3)  # 1 running, the new fleet of 2 rolls in batches of 1: 2 + 1
    new_version(sm)
    cw.add_response("put_metric_alarm", {}, ERRORS_ALARM)
    sm.add_response("update_endpoint", {"EndpointArn": ARN + "e"}, {
        "EndpointName": ENDPOINT, "EndpointConfigName": v(2), "RetainAllVariantProperties": True,
        "ExcludeRetainedVariantProperties": [{"VariantPropertyType": "DesiredInstanceCount"}],
        "DeploymentConfig": {"RollingUpdatePolicy": ANY, **ROLLBACK}})
    assert endpoints.deploy(manifest(initial=2))["state"] == "Updating"


@pytest.mark.parametrize("current", range(0, 41))
def test_every_plan_is_a_request_the_service_model_accepts_and_within_the_documented_batch_limits(current):
    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model("UpdateEndpoint").input_shape
    for same_type in (True, False):
        plan = deploy_guardrails.plan(ENDPOINT, current, manifest(scaling={"min": 0, "max": 40})["endpoint"],
                                      same_type, STARTUP_HEALTH_CHECK_S)
        report = ParamValidator().validate(deploy_guardrails.update_request(ENDPOINT, v(2), plan), shape)
        assert not report.has_errors(), report.generate_report()
        rolling = plan.deployment.get("RollingUpdatePolicy")
        if current >= 2:  # "Value must be between 5% to 50% of the variant's total instance count"
            batch = rolling["MaximumBatchSize"]["Value"]
            assert 0.05 * current <= batch <= 0.5 * current
            assert plan.peak == (current + batch if same_type else current)
        else:
            assert rolling is None and plan.peak == (2 * current if same_type else current)


def test_a_quota_too_small_is_refused_with_the_numbers_before_anything_is_created(cloud):
    """One instance: blue/green needs the new fleet beside the old, 2 at once; the quota says 1."""
    endpoints, stubs, events = cloud
    sm, sq = stubs["sagemaker"], stubs["service-quotas"]
    running(sm, 1)
    quota(sq, 1)
    with pytest.raises(QuotaExceeded) as refused:
        endpoints.deploy(manifest(scaling={"min": 1, "max": 1}))
    message = refused.value.message
    assert f"'{TYPE} for endpoint usage' is 1 in us-east-1" in message and "needs 2 at once" in message
    assert "L-2" in message and "stop the endpoint first" in message
    assert refused.value.code == "quota_exceeded" and events == []  # and the Stubber saw no create, no alarm


def test_a_new_endpoint_over_the_quota_is_refused_before_its_model_is_created(cloud):
    endpoints, stubs, events = cloud
    sm, sq = stubs["sagemaker"], stubs["service-quotas"]
    sm.add_client_error("describe_endpoint", "ValidationException", f'Could not find endpoint "{ENDPOINT}".',
                        expected_params={"EndpointName": ENDPOINT})
    listed(sq, [], defaults=[[service_quota(TYPE, 0, "L-2")]])
    with pytest.raises(QuotaExceeded, match="is 0 in us-east-1, and this deploy needs 1 at once"):
        endpoints.deploy(manifest(version=1))
    assert events == []


def test_a_quota_that_cannot_be_read_is_a_warning_not_a_refusal(cloud):
    endpoints, stubs, events = cloud
    sm, cw, sq = stubs["sagemaker"], stubs["cloudwatch"], stubs["service-quotas"]
    running(sm, 1)
    sq.add_client_error("list_service_quotas", "AccessDeniedException", "not authorized to perform "
                        "servicequotas:ListServiceQuotas", expected_params={"ServiceCode": "sagemaker"})
    new_version(sm)
    cw.add_response("put_metric_alarm", {}, ERRORS_ALARM)
    sm.add_response("update_endpoint", {"EndpointArn": ARN + "e"}, {
        "EndpointName": ENDPOINT, "EndpointConfigName": v(2), "RetainAllVariantProperties": True,
        "DeploymentConfig": ANY})
    state = endpoints.deploy(manifest(scaling={"min": 1, "max": 1}))
    assert state["state"] == "Updating"
    assert "could not be read" in state["warning"] and "access denied" in state["warning"]
    assert "needs 2 at once" in state["warning"]
    assert events[-1]["warning"] == state["warning"]


def test_an_update_sagemaker_rolled_back_on_the_alarm_says_so(cloud):
    endpoints, stubs, events = cloud
    sm, cw = stubs["sagemaker"], stubs["cloudwatch"]
    base = {"EndpointName": ENDPOINT, "EndpointArn": ARN + f"endpoint/{ENDPOINT}", "CreationTime": T0,
            "LastModifiedTime": T0, "ProductionVariants": [{"VariantName": "AllTraffic", "CurrentInstanceCount": 1}],
            "LastDeploymentConfig": {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {
                "Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 300}}, **ROLLBACK}}
    sm.add_response("describe_endpoint", {**base, "EndpointConfigName": v(1), "EndpointStatus": "Updating"},
                    {"EndpointName": ENDPOINT})
    sm.add_response("describe_endpoint", {**base, "EndpointConfigName": v(1), "EndpointStatus": "RollingBack"},
                    {"EndpointName": ENDPOINT})
    sm.add_response("describe_endpoint", {**base, "EndpointConfigName": v(1), "EndpointStatus": "InService",
                                          "FailureReason": "Deployment failed: an alarm went off."},
                    {"EndpointName": ENDPOINT})
    cw.add_response("describe_alarms", {"MetricAlarms": [{"AlarmName": ALARM, "StateValue": "ALARM"}]},
                    {"AlarmNames": [ALARM]})
    sm.add_response("delete_endpoint_config", {}, {"EndpointConfigName": v(2)})
    sm.add_response("delete_model", {}, {"ModelName": v(2)})
    assert endpoints.settle(manifest(), ENDPOINT)["EndpointConfigName"] == v(1)
    last = events[-1]
    assert [e["state"] for e in events] == ["Updating", "RollingBack", "InService"]
    assert last["version"] == 1
    assert last["reason"] == (f"version 2 rolled back by SageMaker (alarm {ALARM}: Deployment failed: an alarm "
                              "went off.); still serving version 1")


def test_a_failure_reason_that_names_the_alarm_needs_no_further_call():
    described = {"FailureReason": f"Alarm {ALARM} went into ALARM", "LastDeploymentConfig": ROLLBACK}
    assert deploy_guardrails.rollback_alarm(None, described) == ALARM


def test_the_rollback_alarm_is_the_extensions_and_goes_with_the_endpoint():
    assert ALARM.startswith(f"{naming.PREFIX}-") and ALARM in naming.alarm_names(ENDPOINT)


def test_a_start_over_the_quota_is_refused_before_the_endpoint_is_created(cloud, tmp_path):
    endpoints, stubs, events = cloud
    sm, sq = stubs["sagemaker"], stubs["service-quotas"]
    endpoints.store = store = FolderStore(tmp_path / "store")
    store.put("environments/portraits/versions/v000001.json", json.dumps(
        {**manifest(version=1, initial=2), "custom_nodes": [], "models": []}).encode())
    store.put("endpoints/portraits/stopped.json", json.dumps(
        {"environment": "Portraits", "endpoint_config": v(1), "version": 1}).encode())
    sm.add_client_error("describe_endpoint", "ValidationException", f'Could not find endpoint "{ENDPOINT}".',
                        expected_params={"EndpointName": ENDPOINT})
    quota(sq, 1)
    with pytest.raises(QuotaExceeded, match="is 1 in us-east-1, and this deploy needs 2 at once"):
        endpoints.start("Portraits")
    assert events == [] and json.loads(store.get("endpoints/portraits/stopped.json").data)["version"] == 1
