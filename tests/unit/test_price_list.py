"""`aws prices refresh` (aws/price_list.py) through botocore's Stubber: GetProducts asked as the Price List API
documents it (service code AmazonSageMaker, TERM_MATCH filters, paginated), its PriceList read as JSON strings,
only hosting instance-hours kept, the table rewritten dated today with the other regions and the stack's rates
kept; a caller without pricing:GetProducts, or a region with no price, leaves the table as it was."""

from __future__ import annotations

import json
import shutil
from datetime import date

import boto3
import pytest
from botocore.stub import Stubber
from comfyui_sagemaker import cli
from comfyui_sagemaker.aws import price_list
from comfyui_sagemaker.aws.price_list import PricesNotRefreshed, hourly_rate, refresh
from comfyui_sagemaker.core import prices

TODAY = date(2027, 1, 15)


def product(usagetype: str, instance: str, usd: str, region: str = "us-east-1", unit: str = "Hrs") -> str:
    """One PriceList entry as the API returns it: a JSON document in a string."""
    sku = f"SKU{abs(hash(usagetype)) % 10**8}"
    return json.dumps({
        "product": {"productFamily": "ML Instance", "sku": sku, "attributes": {
            "servicecode": "AmazonSageMaker", "regionCode": region, "location": "US East (N. Virginia)",
            "instanceName": instance, "component": "Hosting", "usagetype": usagetype, "operation": "RunInstance"}},
        "serviceCode": "AmazonSageMaker", "version": "20261201000000", "publicationDate": "2026-12-01T00:00:00Z",
        "terms": {"OnDemand": {f"{sku}.JRTCKXETXF": {
            "offerTermCode": "JRTCKXETXF", "sku": sku, "effectiveDate": "2026-12-01T00:00:00Z",
            "priceDimensions": {f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
                "unit": unit, "pricePerUnit": {"USD": usd}, "description": f"${usd} per {instance} hour",
                "beginRange": "0", "endRange": "Inf", "rateCode": f"{sku}.JRTCKXETXF.6YS6EN2CT7", "appliesTo": []}},
            "termAttributes": {}}}}})


def asked(region: str, token: str | None = None) -> dict:
    params = {"ServiceCode": "AmazonSageMaker", "FormatVersion": "aws_v1", "Filters": [
        {"Type": "TERM_MATCH", "Field": "component", "Value": "Hosting"},
        {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region}]}
    return {**params, "NextToken": token} if token else params


@pytest.fixture
def pricing(aws_env):
    client = boto3.client("pricing", region_name=price_list.PRICING_REGION)
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "prices.json"
    shutil.copy(prices.TABLE_PATH, path)
    return path


def test_only_hosting_instance_hours_are_read():
    assert hourly_rate(product("USE1-Host:ml.g5.xlarge", "ml.g5.xlarge", "1.5000000000")) == (
        "us-east-1", "ml.g5.xlarge", 1.5)
    assert hourly_rate(product("Host:ml.g5.xlarge", "ml.g5.xlarge", "1.5")) == ("us-east-1", "ml.g5.xlarge", 1.5)
    for other in ("USE1-Train:ml.g5.xlarge", "USE1-AsyncInf:ml.g5.xlarge", "USE1-Notebk:ml.t3.medium",
                  "USE1-Host:ml.g5.xlarge-Storage"):
        assert hourly_rate(product(other, "ml.g5.xlarge", "1.5")) is None, other
    assert hourly_rate(product("USE1-Host:ml.g5.xlarge", "ml.g5.xlarge", "0.0000000000")) is None
    assert hourly_rate(product("USE1-Host:ml.g5.xlarge", "ml.g5.xlarge", "1.5", unit="GB-Mo")) is None


def test_refresh_rewrites_the_regions_asked_dated_today_and_keeps_the_rest(pricing, table):
    client, stub = pricing
    stub.add_response("get_products", {"FormatVersion": "aws_v1", "NextToken": "page2", "PriceList": [
        product("USE1-Host:ml.g5.xlarge", "ml.g5.xlarge", "1.5000000000"),
        product("USE1-Train:ml.g5.xlarge", "ml.g5.xlarge", "1.4100000000")]}, asked("us-east-1"))
    stub.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": [
        product("USE1-Host:ml.g6.xlarge", "ml.g6.xlarge", "1.1270000000")]}, asked("us-east-1", "page2"))
    said: list[str] = []
    refresh(client, ["us-east-1"], said.append, table, TODAY)
    written = json.loads(table.read_text())
    assert written["as_of"] == "2027-01-15" and "read 2027-01-15" in written["source"]
    assert written["sagemaker_hosting"]["us-east-1"] == {"ml.g5.xlarge": 1.5, "ml.g6.xlarge": 1.127}
    shipped = json.loads(prices.TABLE_PATH.read_text())
    assert written["sagemaker_hosting"]["us-west-2"] == shipped["sagemaker_hosting"]["us-west-2"]
    assert written["stack"] == shipped["stack"]
    assert said == ["us-east-1: 2 instance types (ml.g5.xlarge: $1.50/h)", f"wrote {table} (prices of 2027-01-15)"]


def test_a_caller_without_pricing_get_products_is_told_and_nothing_is_written(pricing, table):
    client, stub = pricing
    before = table.read_text()
    stub.add_client_error("get_products", "AccessDeniedException", "User: arn:aws:iam::123456789012:user/artist "
                          "is not authorized to perform: pricing:GetProducts", 400, expected_params=asked("eu-west-1"))
    with pytest.raises(PricesNotRefreshed, match="AccessDeniedException.*need pricing:GetProducts; the prices of "):
        refresh(client, ["eu-west-1"], print, table, TODAY)
    assert table.read_text() == before


def test_a_region_without_prices_leaves_the_table_as_it_was(pricing, table):
    client, stub = pricing
    before = table.read_text()
    stub.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": []}, asked("mars-north-1"))
    with pytest.raises(PricesNotRefreshed, match="no SageMaker hosting price in mars-north-1"):
        refresh(client, ["mars-north-1"], print, table, TODAY)
    assert table.read_text() == before


def test_the_cli_asks_the_pricing_endpoint_for_the_regions_given(pricing, table, monkeypatch, capsys):
    client, stub = pricing
    made = []
    monkeypatch.setattr("comfyui_sagemaker.aws.clients.client", lambda service, region: made.append(
        (service, region)) or client)
    stub.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": [
        product("EU-Host:ml.g5.xlarge", "ml.g5.xlarge", "1.58", region="eu-west-1")]}, asked("eu-west-1"))
    assert cli.main(["aws", "prices", "refresh", "--region", "eu-west-1", "--out", str(table)]) == 0
    assert made == [("pricing", "us-east-1")]
    assert json.loads(table.read_text())["sagemaker_hosting"]["eu-west-1"] == {"ml.g5.xlarge": 1.58}
    assert "eu-west-1: 1 instance types" in capsys.readouterr().out
