"""A SageMaker endpoint's log from CloudWatch Logs (the requests through botocore's Stubber): the newest
instances' streams, the last lines across them in time order, a filter, and no log group yet."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber
from comfyui_sagemaker.aws.endpoint_logs import log_group, read_logs

pytestmark = pytest.mark.stubber

ENDPOINT = "cs-portraits-12345678"
GROUP = log_group(ENDPOINT)


@pytest.fixture
def logs(aws_env):
    client = boto3.client("logs", region_name="us-east-1")
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def streams(stub, *names):
    stub.add_response("describe_log_streams", {"logStreams": [{"logStreamName": n} for n in names]},
                      {"logGroupName": GROUP, "orderBy": "LastEventTime", "descending": True, "limit": 5})


def test_the_last_lines_across_instances_in_time_order(logs):
    client, stub = logs
    assert GROUP == f"/aws/sagemaker/Endpoints/{ENDPOINT}"
    streams(stub, "AllTraffic/i-b", "AllTraffic/i-a")
    stub.add_response("get_log_events", {"events": [{"timestamp": 2, "message": "b two\n"},
                                                    {"timestamp": 4, "message": "b four"}]},
                      {"logGroupName": GROUP, "logStreamName": "AllTraffic/i-b", "limit": 3, "startFromHead": False})
    stub.add_response("get_log_events", {"events": [{"timestamp": 1, "message": "a one"},
                                                    {"timestamp": 3, "message": "a three"}]},
                      {"logGroupName": GROUP, "logStreamName": "AllTraffic/i-a", "limit": 3, "startFromHead": False})
    assert read_logs(client, ENDPOINT, 3) == "[i-b] b two\n[i-a] a three\n[i-b] b four\n"


def test_a_filter_uses_cloudwatchs_own_and_keeps_the_last_matches(logs):
    client, stub = logs
    streams(stub, "AllTraffic/i-a")
    base = {"logGroupName": GROUP, "logStreamNames": ["AllTraffic/i-a"], "filterPattern": '"Traceback"'}
    stub.add_response("filter_log_events", {"events": [{"timestamp": 1, "message": "Traceback 1"}],
                                            "nextToken": "t2"}, base)
    stub.add_response("filter_log_events", {"events": [{"timestamp": 2, "message": "Traceback 2"}]},
                      {**base, "nextToken": "t2"})
    assert read_logs(client, ENDPOINT, 1, contains="Traceback") == "[i-a] Traceback 2\n"


def test_an_endpoint_that_never_logged_says_so(logs):
    client, stub = logs
    stub.add_client_error("describe_log_streams", "ResourceNotFoundException",
                          "The specified log group does not exist.", http_status_code=400)
    assert "no log yet" in read_logs(client, ENDPOINT, 10)
