"""SageMaker endpoints' instance-hours from CloudWatch (aws/endpoint_usage.py): the exact GetMetricData request
(botocore's Stubber against the service model), pages followed, sample counts as instance-hours, a refusal in the
user's words; and once on moto, instance metrics put as SageMaker's instances publish them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import boto3
import pytest
from comfyui_sagemaker.aws import naming
from comfyui_sagemaker.aws.endpoint_usage import NAMESPACE, usage
from comfyui_sagemaker.aws.errors import AwsError
from comfyui_sagemaker.core import costs
from harness.sagemaker_stub import STORE, stubbed_endpoints

NOW = datetime(2026, 12, 7, 15, 30, tzinfo=timezone.utc)
START = datetime(2026, 11, 8, tzinfo=timezone.utc)


def view(name: str) -> dict:
    return {"name": name, "kind": "sagemaker", "state": "InService", "instances": 1,
            "endpoint_name": naming.endpoint_name(name, STORE)}


def query(i: int, name: str) -> dict:
    dims = [{"Name": "EndpointName", "Value": naming.endpoint_name(name, STORE)},
            {"Name": "VariantName", "Value": "AllTraffic"}]
    return {"Id": f"e{i}", "ReturnData": True,
            "MetricStat": {"Metric": {"Namespace": NAMESPACE, "MetricName": "CPUUtilization", "Dimensions": dims},
                           "Period": 3600, "Stat": "SampleCount"}}


@pytest.fixture
def stubbed(aws_env):
    with stubbed_endpoints(("cloudwatch",)) as cloud:
        yield cloud.endpoints, cloud.stubs["cloudwatch"]


@pytest.mark.stubber
def test_one_request_reads_every_endpoints_hours_and_its_pages_are_followed(stubbed):
    endpoints, stub = stubbed
    request = {"MetricDataQueries": [query(0, "Portraits"), query(1, "Sketches")], "StartTime": START, "EndTime": NOW,
               "ScanBy": "TimestampAscending"}
    stub.add_response("get_metric_data", {
        "MetricDataResults": [
            # 120 instance-minutes in the hour from 09:00: two instances; 60 from 10:00: one.
            {"Id": "e0", "Label": "a", "StatusCode": "PartialData", "Timestamps": [
                datetime(2026, 12, 7, 9, tzinfo=timezone.utc), datetime(2026, 12, 7, 10, tzinfo=timezone.utc)],
             "Values": [120.0, 60.0]},
            {"Id": "e1", "Label": "b", "StatusCode": "PartialData", "Timestamps": [], "Values": []}],
        "NextToken": "page2"}, request)
    stub.add_response("get_metric_data", {
        "MetricDataResults": [
            # The hour now runs in (15:00 to 15:30): 30 instance-minutes are half an instance-hour.
            {"Id": "e0", "Label": "a", "StatusCode": "Complete", "Timestamps": [
                datetime(2026, 12, 7, 15, tzinfo=timezone.utc)], "Values": [30.0]},
            {"Id": "e1", "Label": "b", "StatusCode": "Complete", "Timestamps": [], "Values": []}]},
        {**request, "NextToken": "page2"})
    found = endpoints.usage([view("Portraits"), view("Sketches")], START + timedelta(minutes=7), NOW)
    assert set(found) == {"Portraits", "Sketches"} and found["Sketches"] == []  # no datapoint: no instance ran
    spans = found["Portraits"]
    assert [(s.start.hour, s.instances) for s in spans] == [(9, 2), (10, 1), (15, 1)]
    assert spans[-1].end == NOW
    assert costs.instance_hours(spans, costs.day_start(NOW), NOW) == pytest.approx(3.5)


@pytest.mark.stubber
def test_a_refused_metrics_read_is_said_in_the_users_words(stubbed):
    endpoints, stub = stubbed
    stub.add_client_error("get_metric_data", "AccessDenied", "User: arn:aws:iam::1:user/a is not authorized to "
                          "perform: cloudwatch:GetMetricData", http_status_code=403)
    with pytest.raises(AwsError, match="access denied: .*cloudwatch:GetMetricData"):
        endpoints.usage([view("Portraits")], START, NOW)


def test_no_endpoint_asks_nothing(stubbed):
    endpoints, _ = stubbed
    assert endpoints.usage([], START, NOW) == {}


def test_instance_metrics_on_moto_become_instance_hours(aws_env):
    from moto import mock_aws

    with mock_aws():
        cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
        now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
        first = now - timedelta(hours=3)
        name = naming.endpoint_name("Portraits", STORE)
        dims = [{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": "AllTraffic"}]
        # Two instances for two hours, each publishing CPUUtilization once a minute.
        data = [{"MetricName": "CPUUtilization", "Dimensions": dims, "Timestamp": first + timedelta(minutes=m),
                 "Value": 3.0} for m in range(120) for _ in range(2)]
        for i in range(0, len(data), 500):
            cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=data[i:i + 500])
        found = usage(cloudwatch, [view("Portraits")], now - timedelta(days=2), now)
        assert costs.instance_hours(found["Portraits"], now - timedelta(days=2), now) == pytest.approx(4)
