"""GET /sagemaker/costs and `comfyui-sagemaker costs` with a SageMaker endpoint on moto (in-process: SageMaker,
CloudWatch and the S3 store): the endpoint's instances now and its hourly price from the price table, its
instance-hours from its instance metrics as SageMaker publishes them (one CPUUtilization datapoint per instance per
minute), the store's bytes on S3 at the S3 rate."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from comfyui_sagemaker import cli
from comfyui_sagemaker.aws import clients, naming
from comfyui_sagemaker.aws.endpoint_usage import NAMESPACE
from comfyui_sagemaker.aws.s3_store import S3Store
from comfyui_sagemaker.aws.sagemaker_endpoints import SageMakerEndpoints
from comfyui_sagemaker.core import costs, prices
from harness.fake_comfy import FakeComfy, publish
from harness.service_quotas import answering

STORE = "s3://team-bucket/comfy"
ROLE = "arn:aws:iam::123456789012:role/ComfySageMaker"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/comfyui-sagemaker-worker:0.1.0"
G4DN = prices.hourly("us-east-1", "ml.g4dn.xlarge")


@pytest.fixture
def on_moto(tmp_path, aws_env, monkeypatch):
    from moto import mock_aws

    for var in [v for v in os.environ if v.startswith("COMFYUI_SAGEMAKER_")]:
        monkeypatch.delenv(var)
    clients.reset()
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="team-bucket")
        store = S3Store("team-bucket", "comfy", s3_client=s3)
        manifest = publish(store, "Portraits")
        manifest["endpoint"] = {"kind": "sagemaker", "instance_type": "ml.g4dn.xlarge", "initial_count": 1,
                                "mode": "async", "autoscaling": None}
        store.put(f"environments/portraits/versions/v{1:06d}.json", json.dumps(manifest).encode())
        endpoints = SageMakerEndpoints(STORE, ROLE, IMAGE, "us-east-1", poll_interval=0, store=store,
                                       clients={"service-quotas": answering("ml.g4dn.xlarge")})
        endpoints.monitor = lambda m, e, recreate=False: None  # moto is InService at once
        endpoints.deploy(manifest)
        designer = FakeComfy(tmp_path / "designer", store, endpoints).serve()  # type: ignore[arg-type]
        artist = FakeComfy(tmp_path / "artist", store, endpoints, role="artist").serve()  # type: ignore[arg-type]
        yield designer, artist, store
        designer.close()
        artist.close()
    clients.reset()


def instance_metrics(instances: int, hours: int) -> tuple[datetime, datetime]:
    """What `instances` instances publish while they run `hours` hours, ending at the last whole hour."""
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    first = end - timedelta(hours=hours)
    dims = [{"Name": "EndpointName", "Value": naming.endpoint_name("Portraits", STORE)},
            {"Name": "VariantName", "Value": "AllTraffic"}]
    data = [{"MetricName": "CPUUtilization", "Dimensions": dims, "Timestamp": first + timedelta(minutes=m),
             "Value": 12.0} for m in range(hours * 60) for _ in range(instances)]
    for i in range(0, len(data), 500):
        cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=data[i:i + 500])
    return first, end


def test_a_sagemaker_endpoint_costs_its_instance_hours_at_its_types_price(on_moto, capsys):
    designer, artist, _ = on_moto
    first, end = instance_metrics(2, 3)
    ran = [costs.Span(first, end, 2)]
    now = datetime.now(timezone.utc)
    for face in (designer, artist):
        report = face.get("/sagemaker/costs?fresh=1").json()
        [e] = report["endpoints"]
        assert e["name"] == "Portraits" and e["kind"] == "sagemaker" and e["state"] == "InService"
        assert e["instances"] == 1 and e["instance_type"] == "ml.g4dn.xlarge" and e["hourly"] == pytest.approx(G4DN)
        assert e["history"] == "cloudwatch"
        month = costs.instance_hours(ran, costs.month_start(now), now)
        assert e["instance_hours_month"] == pytest.approx(month)  # 6 unless the month began within 3 hours
        assert e["cost_month"] == pytest.approx(month * G4DN)
        assert sum(d["instance_hours"] for d in e["days"]) == pytest.approx(6)
        storage = report["storage"]
        assert storage["kind"] == "s3" and storage["bytes"] > 0
        rate = prices.stack_rate("us-east-1", "s3_gb_month")
        assert storage["monthly"] == pytest.approx(storage["bytes"] / 2**30 * rate, abs=1e-4)
        assert {p["prefix"] for p in report["storage"]["prefixes"]} >= {"blobs/", "environments/"}
        assert report["unavailable"] == []
    assert cli.main(["costs", "--url", designer.url]) == 0
    printed = capsys.readouterr().out
    assert "Portraits [sagemaker, InService]: 1 × ml.g4dn.xlarge, $0.74/h" in printed
    assert "storage (s3):" in printed
