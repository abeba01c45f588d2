"""Who may read what endpoints cost, under moto's IAM enforcement with the stack's own policies: a designer and an
artist read the endpoints' instance metrics (cloudwatch:GetMetricData); a principal without that grant is refused,
and the costs report then estimates and says why (the refusal's words: tests/unit/test_endpoint_usage.py)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.exceptions import ClientError
from comfyui_sagemaker.aws.endpoint_usage import NAMESPACE, usage
from harness.iam_semantics import REGION, stack_policy
from harness.moto_iam import for_moto

ENDPOINT = {"name": "Portraits", "kind": "sagemaker", "state": "InService", "instances": 1,
            "endpoint_name": "cs-portraits-0123456789"}
NO_METRICS = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["sagemaker:DescribeEndpoint", "sagemaker:ListEndpoints"], "Resource": "*"}]}


def cloudwatch_as(policies: dict[str, dict]) -> dict:
    """{name: a CloudWatch client signed as an IAM user holding that policy} (inside mock_aws)."""
    iam = boto3.client("iam", region_name=REGION)
    made = {}
    for name, document in policies.items():
        iam.create_user(UserName=name)
        arn = iam.create_policy(PolicyName=f"{name}-policy", PolicyDocument=json.dumps(for_moto(document)))
        iam.attach_user_policy(UserName=name, PolicyArn=arn["Policy"]["Arn"])
        key = iam.create_access_key(UserName=name)["AccessKey"]
        made[name] = boto3.client("cloudwatch", region_name=REGION, aws_access_key_id=key["AccessKeyId"],
                                  aws_secret_access_key=key["SecretAccessKey"])
    return made


def test_designers_and_artists_read_instance_metrics_and_others_are_refused(aws_env):
    from moto import mock_aws
    from moto.core import enable_iam_authentication

    with mock_aws():
        now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
        dims = [{"Name": "EndpointName", "Value": ENDPOINT["endpoint_name"]},
                {"Name": "VariantName", "Value": "AllTraffic"}]
        boto3.client("cloudwatch", region_name=REGION).put_metric_data(Namespace=NAMESPACE, MetricData=[
            {"MetricName": "CPUUtilization", "Dimensions": dims, "Timestamp": now - timedelta(hours=1, minutes=m),
             "Value": 1.0} for m in range(1, 61)])
        clients = cloudwatch_as({"designer": stack_policy("designer"), "artist": stack_policy("artist"),
                                 "other": NO_METRICS})
        with enable_iam_authentication():
            for role in ("designer", "artist"):
                spans = usage(clients[role], [ENDPOINT], now - timedelta(days=1), now)["Portraits"]
                assert sum(s.instances * (s.end - s.start).total_seconds() / 3600 for s in spans) == pytest.approx(1)
            with pytest.raises(ClientError) as refused:
                usage(clients["other"], [ENDPOINT], now - timedelta(days=1), now)
            assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
