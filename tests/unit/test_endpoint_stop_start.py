"""Stopping and starting a SageMaker endpoint, through botocore's Stubber (request shapes checked against the
service model; a call not listed here fails the test): stop deletes the endpoint and nothing else (its
EndpointConfig and Model stay, a record in the store says it is stopped), start creates it again with the
same EndpointConfigName. `Stopped` is ours, not a SageMaker EndpointStatus."""

from __future__ import annotations

import json
from datetime import datetime

import botocore.session
import pytest
from botocore.stub import ANY
from comfyui_sagemaker.aws import naming
from comfyui_sagemaker.core.endpoints import (
    EndpointBusy,
    EndpointNotFound,
    EndpointNotReady,
    EndpointStateConflict,
)
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.sagemaker_stub import ENDPOINT, ROLE, STORE, stubbed_endpoints

pytestmark = pytest.mark.stubber

V1 = f"{ENDPOINT}-v1"
ARN = "arn:aws:sagemaker:us-east-1:123456789012:"
T0 = datetime(2026, 1, 1)
MANIFEST = {"name": "Portraits", "version": 1, "custom_nodes": [], "models": [], "endpoint": {
    "kind": "sagemaker", "instance_type": "ml.g5.xlarge", "initial_count": 1, "mode": "async",
    "autoscaling": {"min": 0, "max": 2}}}
RECORD = "endpoints/portraits/stopped.json"


class Cloud:
    def __init__(self, stubs):
        self.sm, self.aas, self.cw = stubs["sagemaker"], stubs["application-autoscaling"], stubs["cloudwatch"]

    def describe(self, status, config=V1):
        self.sm.add_response("describe_endpoint", {
            "EndpointName": ENDPOINT, "EndpointArn": ARN + f"endpoint/{ENDPOINT}", "EndpointConfigName": config,
            "EndpointStatus": status, "CreationTime": T0, "LastModifiedTime": T0,
            "ProductionVariants": [{"VariantName": "AllTraffic", "CurrentInstanceCount": 1}]},
            {"EndpointName": ENDPOINT})

    def gone(self):
        self.sm.add_client_error("describe_endpoint", "ValidationException", f'Could not find endpoint "{ENDPOINT}".',
                                 expected_params={"EndpointName": ENDPOINT})

    def no_scaling(self):
        rid = naming.resource_id(ENDPOINT)
        dim = {"ServiceNamespace": "sagemaker", "ResourceId": rid,
               "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"}
        self.aas.add_response("describe_scaling_policies", {"ScalingPolicies": []}, dim)
        self.aas.add_response("describe_scalable_targets", {"ScalableTargets": []},
                              {"ServiceNamespace": "sagemaker", "ResourceIds": [rid],
                               "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"})
        self.cw.add_response("delete_alarms", {}, {"AlarmNames": naming.alarm_names(ENDPOINT)})

    def delete_endpoint(self):
        self.sm.add_response("delete_endpoint", {}, {"EndpointName": ENDPOINT})

    def create_endpoint(self, config=V1):
        self.sm.add_response("create_endpoint", {"EndpointArn": ARN + f"endpoint/{ENDPOINT}"},
                             {"EndpointName": ENDPOINT, "EndpointConfigName": config, "Tags": ANY})

    def listed(self, *names):
        self.sm.add_response("list_endpoints", {"Endpoints": [
            {"EndpointName": n, "EndpointArn": ARN + f"endpoint/{n}", "CreationTime": T0, "LastModifiedTime": T0,
             "EndpointStatus": "InService"} for n in names]}, {"NameContains": f"{naming.PREFIX}-"})


@pytest.fixture
def cloud(aws_env, tmp_path):
    store = FolderStore(tmp_path / "store")
    store.put("environments/portraits/versions/v000001.json", json.dumps(MANIFEST).encode())
    with stubbed_endpoints(store=store) as cloud:
        yield cloud.endpoints, Cloud(cloud.stubs), store, cloud.events, cloud.monitored


def stop(endpoints, aws, status="InService"):
    aws.describe(status)
    aws.no_scaling()
    aws.delete_endpoint()
    aws.gone()  # followed until SageMaker has deleted it
    return endpoints.stop("Portraits")


def test_stopped_is_ours_not_a_sagemaker_status():
    documented = botocore.session.get_session().get_service_model("sagemaker").shape_for("EndpointStatus").enum
    assert "Stopped" not in documented


def test_stop_deletes_the_endpoint_only_and_records_its_config(cloud):
    endpoints, aws, store, events, _ = cloud
    view = stop(endpoints, aws)  # no DeleteEndpointConfig, no DeleteModel: the Stubber would refuse them
    assert view["state"] == "Stopped" and view["endpoint_config"] == V1 and view["version"] == 1
    assert view["instances"] == 0
    record = json.loads(store.get(RECORD).data)
    assert record["endpoint_config"] == V1 and record["environment"] == "Portraits"
    assert [e["state"] for e in events] == ["Stopped", "Stopped"]  # at once, and once SageMaker is done
    aws.gone()
    assert endpoints.get("Portraits")["state"] == "Stopped"
    aws.listed()  # SageMaker lists nothing: the stopped endpoint is still there
    assert [(e["name"], e["state"]) for e in endpoints.list()] == [("Portraits", "Stopped")]


def test_while_sagemaker_deletes_it_the_endpoint_is_stopped_already(cloud):
    endpoints, aws, store, _, _ = cloud
    aws.describe("InService")
    aws.no_scaling()
    aws.delete_endpoint()
    endpoints.wait_gone = lambda endpoint, timeout: False  # SageMaker is still deleting it
    endpoints.stop("Portraits")
    aws.describe("Deleting")
    assert endpoints.get("Portraits")["state"] == "Stopped"
    aws.listed(ENDPOINT)
    aws.sm.add_response("list_tags", {"Tags": naming.tags("Portraits", None, STORE)},
                        {"ResourceArn": ARN + f"endpoint/{ENDPOINT}"})
    aws.describe("Deleting")
    assert [(e["name"], e["state"]) for e in endpoints.list()] == [("Portraits", "Stopped")]


def test_a_stopped_endpoint_refuses_to_stop_again_and_to_run(cloud):
    endpoints, aws, _, _, _ = cloud
    stop(endpoints, aws)
    aws.gone()
    with pytest.raises(EndpointStateConflict, match="stopped already") as err:
        endpoints.stop("Portraits")
    assert err.value.code == "endpoint_state"
    aws.gone()
    with pytest.raises(EndpointNotReady, match="stopped"):
        endpoints.check_ready("Portraits")


def test_start_creates_the_endpoint_with_the_kept_config_and_follows_it(cloud):
    endpoints, aws, store, events, monitored = cloud
    stop(endpoints, aws)
    aws.gone()
    aws.create_endpoint(V1)
    view = endpoints.start("Portraits")
    assert view["state"] == "Creating" and view["endpoint_config"] == V1
    assert not store.exists(RECORD)
    assert monitored == [(MANIFEST, ENDPOINT, False)]  # followed as a deploy is (autoscaling from the manifest)
    assert events[-1]["state"] == "Creating"


def test_start_while_sagemaker_still_deletes_creates_once_it_is_gone(cloud):
    endpoints, aws, store, events, monitored = cloud
    aws.describe("InService")
    aws.no_scaling()
    aws.delete_endpoint()
    waits = iter([False, True])  # still deleting after the stop; gone when the start looks again
    endpoints.wait_gone = lambda endpoint, timeout: next(waits)
    endpoints.stop("Portraits")
    aws.describe("Deleting")
    aws.create_endpoint(V1)
    assert endpoints.start("Portraits")["state"] == "Creating"
    assert not store.exists(RECORD) and monitored == [(MANIFEST, ENDPOINT, False)]


def test_start_refuses_a_running_endpoint_and_an_unknown_one(cloud):
    endpoints, aws, _, _, _ = cloud
    aws.describe("InService")
    with pytest.raises(EndpointStateConflict, match="InService, not stopped") as err:
        endpoints.start("Portraits")
    assert err.value.code == "endpoint_state"
    aws.gone()
    with pytest.raises(EndpointNotFound):
        endpoints.start("Portraits")
    aws.gone()
    with pytest.raises(EndpointNotFound):
        endpoints.stop("Portraits")


def test_stop_refuses_while_sagemaker_allows_no_delete(cloud):
    endpoints, aws, store, _, _ = cloud
    aws.describe("SystemUpdating")
    with pytest.raises(EndpointBusy):
        endpoints.stop("Portraits")
    assert not store.exists(RECORD)


def test_delete_of_a_stopped_endpoint_removes_the_kept_config_model_and_record(cloud):
    endpoints, aws, store, events, _ = cloud
    stop(endpoints, aws)
    aws.gone()
    aws.no_scaling()
    aws.gone()
    aws.sm.add_response("list_endpoint_configs", {"EndpointConfigs": [
        {"EndpointConfigName": V1, "EndpointConfigArn": ARN + "c", "CreationTime": T0}]},
        {"NameContains": f"{ENDPOINT}-v"})
    aws.sm.add_response("list_models", {"Models": [{"ModelName": V1, "ModelArn": ARN + "m", "CreationTime": T0}]},
                        {"NameContains": f"{ENDPOINT}-v"})
    aws.sm.add_response("delete_endpoint_config", {}, {"EndpointConfigName": V1})
    aws.sm.add_response("delete_model", {}, {"ModelName": V1})
    endpoints.delete("Portraits")
    assert not store.exists(RECORD) and events[-1]["state"] == "Deleted"
    aws.gone()
    with pytest.raises(EndpointNotFound):
        endpoints.get("Portraits")


def test_a_deploy_starts_a_stopped_endpoint_on_the_new_version(cloud):
    endpoints, aws, store, _, monitored = cloud
    stop(endpoints, aws)
    aws.gone()
    v2 = f"{ENDPOINT}-v2"
    aws.sm.add_response("create_model", {"ModelArn": ARN + "model/m"},
                        {"ModelName": v2, "ExecutionRoleArn": ROLE, "PrimaryContainer": ANY, "Tags": ANY})
    aws.sm.add_response("create_endpoint_config", {"EndpointConfigArn": ARN + "endpoint-config/c"},
                        {"EndpointConfigName": v2, "ProductionVariants": ANY, "Tags": ANY,
                         "AsyncInferenceConfig": ANY})
    aws.create_endpoint(v2)
    assert endpoints.deploy({**MANIFEST, "version": 2})["state"] == "Creating"
    assert not store.exists(RECORD)


def test_only_a_designer_stops_or_starts_an_endpoint():
    from comfyui_sagemaker.server_routes import policy

    for action in ("stop", "start"):
        policy.check("designer", "POST", f"/endpoints/{{name}}/{action}")
        with pytest.raises(policy.ForbiddenForRole):
            policy.check("artist", "POST", f"/endpoints/{{name}}/{action}")
