"""A SageMaker worker's idle stop (worker/idle_stop.py) through botocore's Stubber, on a fake clock: nothing is
asked while the worker is busy or idle less than idle_stop_minutes; at the deadline one GetMetricData (its shape
checked against CloudWatch's service model) asks whether another instance ran anything; if none did, the
extension's own Stop runs (DescribeEndpoint, autoscaling removed, DeleteEndpoint, the stopped record in the store)
and the endpoint shows as stopped for idleness. A call not listed here fails the test."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from comfyui_sagemaker.aws import iam_actions, naming
from comfyui_sagemaker.core.idle_stop import IDLE, Idleness
from comfyui_sagemaker.local.folder_store import FolderStore
from comfyui_sagemaker.worker import idle_stop
from harness.fake_clock import Clock
from harness.sagemaker_stub import ENDPOINT, STORE, stubbed_endpoints

pytestmark = pytest.mark.stubber

V1 = f"{ENDPOINT}-v1"
ARN = "arn:aws:sagemaker:us-east-1:123456789012:"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
REALTIME = {"kind": "sagemaker", "instance_type": "ml.g5.xlarge", "initial_count": 1, "mode": "realtime",
            "autoscaling": {"min": 1, "max": 2}}


@pytest.fixture
def cloud(aws_env, tmp_path):
    store = FolderStore(tmp_path / "store")
    manifest = {"name": "Portraits", "version": 1, "custom_nodes": [], "models": [], "endpoint": REALTIME}
    store.put("environments/portraits/versions/v000001.json", json.dumps(manifest).encode())
    with stubbed_endpoints(role="", image="", monitor=True, store=store) as cloud:  # a stop's follow-up: here
        yield cloud.endpoints, cloud.stubs, store


def metrics(stubs, now: float, minutes: int, values: list[float], mode: str = "realtime") -> None:
    stubs["cloudwatch"].add_response("get_metric_data", {"MetricDataResults": [
        {"Id": q["Id"], "Label": q["Id"], "Timestamps": [], "Values": values, "StatusCode": "Complete"}
        for q in idle_stop.metric_queries(ENDPOINT, mode, minutes * 60)]}, {
        "MetricDataQueries": idle_stop.metric_queries(ENDPOINT, mode, minutes * 60),
        "StartTime": datetime.fromtimestamp(now - minutes * 60, timezone.utc),
        "EndTime": datetime.fromtimestamp(now, timezone.utc)})


def stop_calls(stubs) -> None:
    sm, aas, cw = stubs["sagemaker"], stubs["application-autoscaling"], stubs["cloudwatch"]
    sm.add_response("describe_endpoint", {
        "EndpointName": ENDPOINT, "EndpointArn": ARN + f"endpoint/{ENDPOINT}", "EndpointConfigName": V1,
        "EndpointStatus": "InService", "CreationTime": T0, "LastModifiedTime": T0,
        "ProductionVariants": [{"VariantName": "AllTraffic", "CurrentInstanceCount": 2}]}, {"EndpointName": ENDPOINT})
    rid = naming.resource_id(ENDPOINT)
    dim = {"ServiceNamespace": "sagemaker", "ResourceId": rid,
           "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"}
    aas.add_response("describe_scaling_policies", {"ScalingPolicies": [{
        "PolicyARN": "arn:aws:autoscaling:us-east-1:123456789012:p", "PolicyName": "tracking", "PolicyType":
        "TargetTrackingScaling", "CreationTime": T0, **dim}]}, dim)
    aas.add_response("delete_scaling_policy", {}, {"PolicyName": "tracking", **dim})
    aas.add_response("describe_scalable_targets", {"ScalableTargets": [{
        **dim, "MinCapacity": 1, "MaxCapacity": 2, "RoleARN": "arn:aws:iam::123456789012:role/x",
        "CreationTime": T0}]}, {"ServiceNamespace": "sagemaker", "ResourceIds": [rid],
                                "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"})
    aas.add_response("deregister_scalable_target", {}, dim)
    alarms = naming.alarm_names(ENDPOINT)  # scale-out from zero, scale-in, the update's rollback
    cw.add_response("delete_alarms", {}, {"AlarmNames": alarms})
    sm.add_response("delete_endpoint", {}, {"EndpointName": ENDPOINT})
    sm.add_client_error("describe_endpoint", "ValidationException", f'Could not find endpoint "{ENDPOINT}".',
                        expected_params={"EndpointName": ENDPOINT})


def test_an_idle_worker_asks_cloudwatch_once_then_stops_its_endpoint(cloud):
    endpoints, stubs, store = cloud
    clock = Clock(T0)
    idleness = Idleness(clock)
    stopper = idle_stop.for_sagemaker(idleness, 60, store, STORE, "Portraits", "realtime", endpoints, clock)
    clock.now = T0 + 59 * 60
    assert not stopper.check()  # not yet: no call (the Stubber refuses any)
    idleness.begin()
    clock.now = T0 + 3 * 3600
    assert not stopper.check()  # running something: never idle
    idleness.end()  # idle since T0 + 3 h
    clock.now = T0 + 4 * 3600
    metrics(stubs, clock.now, 60, [2.0])  # the endpoint's other instance ran two prompts meanwhile
    assert not stopper.check()
    clock.now += 60
    assert not stopper.check()  # asked again only RECHECK_S later
    clock.now += idle_stop.RECHECK_S
    metrics(stubs, clock.now, 60, [])  # no datapoint: no invocation in the window
    stop_calls(stubs)
    assert stopper.check() and stopper.stopped
    record = json.loads(store.get("endpoints/portraits/stopped.json").data)
    assert record["stopped_by"] == IDLE and record["endpoint_config"] == V1
    stubs["sagemaker"].add_client_error("describe_endpoint", "ValidationException",
                                        f'Could not find endpoint "{ENDPOINT}".',
                                        expected_params={"EndpointName": ENDPOINT})
    view = endpoints.get("Portraits")
    assert view["state"] == "Stopped" and view["stopped_by"] == "idle" and view["idle_stop_minutes"] == 60


def test_an_async_endpoint_counts_its_backlog_as_work(cloud):
    endpoints, stubs, _ = cloud
    metrics(stubs, T0, 30, [0.0, 1.0], mode="async")  # nothing processed, one request queued
    assert idle_stop.endpoint_ran(endpoints.cloudwatch, ENDPOINT, "async", 30, T0)
    names = {q["MetricStat"]["Metric"]["MetricName"] for q in idle_stop.metric_queries(ENDPOINT, "async", 1800)}
    assert names == {"InvocationsProcessed", "ApproximateBacklogSize"}


def test_the_execution_role_may_stop_only_this_projects_endpoints():
    from pathlib import Path

    doc = json.loads((Path(iam_actions.__file__).parent / "iam" / "execution-role-policy.json").read_text())
    stops = [s for s in doc["Statement"] if "sagemaker:DeleteEndpoint" in s["Action"]]
    assert [s["Resource"] for s in stops] == [f"arn:aws:sagemaker:REGION:ACCOUNT_ID:endpoint/{naming.PREFIX}-*"]
    alarms = [s for s in doc["Statement"] if "cloudwatch:DeleteAlarms" in s["Action"]]
    assert [s["Resource"] for s in alarms] == [f"arn:aws:cloudwatch:REGION:ACCOUNT_ID:alarm:{naming.PREFIX}-*"]
    assert all(name(ENDPOINT).startswith(f"{naming.PREFIX}-") for name in (naming.alarm_name, naming.idle_alarm_name))


def test_the_worker_keeps_its_idle_clock_and_only_a_sagemaker_worker_stops_itself(tmp_path, aws_env):
    """The worker's own wiring (worker/server.py): a run, even one never started, is not idleness; the idle
    stop starts only on a SageMaker worker (report to the store, S3) whose config keeps an instance."""
    import asyncio
    import concurrent.futures
    import dataclasses

    from comfyui_sagemaker.worker.materialise import Materialiser
    from comfyui_sagemaker.worker.server import Worker
    from comfyui_sagemaker.worker.settings import WorkerSettings

    clock = Clock(T0)
    local = WorkerSettings(manifest_uri=(tmp_path / "store/environments/e/versions/v000001.json").as_uri(),
                           cache_dir=tmp_path / "cache", base_dir=tmp_path / "base")
    w = Worker(local)
    w.idleness = Idleness(clock)

    async def nothing(event) -> None:
        pass

    async def go():
        clock.now = T0 + 600
        w.pool = None  # no ComfyUI: the run fails at once, and still counts as a run
        try:
            await w.execute("a", {"1": {}}, [], nothing, caller_gone=lambda: True)
        except Exception:
            pass
        assert w.report_body()["idle_since"] == "2026-01-01T00:10:00+00:00"
        w.materialiser.endpoint = REALTIME
        w.start_idle_stop()
        assert w.idle_task is None  # a local endpoint's worker: its ComfyUI decides
        w.s = dataclasses.replace(w.s, report_to_store=True,
                                  manifest_uri=f"{STORE}/environments/portraits/versions/v000001.json")
        w.materialiser = Materialiser(w.s.manifest_uri, tmp_path / "cache", tmp_path / "base")
        w.materialiser.endpoint = {**REALTIME, "idle_stop_minutes": 0}
        w.start_idle_stop()
        assert w.idle_task is None  # 0: never
        w.materialiser.endpoint = REALTIME
        w.start_idle_stop()
        assert w.idle_task is not None
        w.idle_task.cancel()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, go()).result()
