"""The one price table (core/prices.json) and the one function everyone calls (core/prices.py): dated, every
type in it a SageMaker hosting type, the product's default type priced in its default region, an unknown
region or type "price unknown" (None) rather than a neighbour's price, and the sentences the form shows."""

from __future__ import annotations

import json
import re

import botocore.session
import pytest
from comfyui_sagemaker.core import prices

HOSTING = set(botocore.session.get_session().get_service_model("sagemaker")
              .shape_for("ProductionVariantInstanceType").enum)


def test_the_table_is_dated_and_names_its_source():
    table = prices.table()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", table.as_of)
    assert "Price List API" in table.source and table.currency == "USD"
    assert table.hours_per_month == 730


def test_every_priced_type_is_a_sagemaker_hosting_type_with_a_positive_price():
    for region, types in prices.table().hosting.items():
        assert re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region)
        for instance_type, price in types.items():
            assert instance_type in HOSTING, instance_type
            assert 0 < price < 200, (region, instance_type)


def test_hourly_and_monthly_of_the_default_endpoint():
    assert prices.hourly("us-east-1", "ml.g5.xlarge") == pytest.approx(1.408)
    assert prices.hourly("us-east-1", "ml.g5.xlarge", 2) == pytest.approx(2.816)
    assert prices.monthly("us-east-1", "ml.g5.xlarge") == pytest.approx(1.408 * 730)
    assert prices.monthly("us-east-1", "ml.g5.xlarge", 0) == 0


@pytest.mark.parametrize("region, instance_type", [("us-east-1", "ml.g5.3xlarge"), ("mars-north-1", "ml.g5.xlarge"),
                                                   ("", ""), ("us-east-1", "ML.G5.XLARGE")])
def test_an_unknown_region_or_type_is_price_unknown(region, instance_type):
    assert prices.hourly(region, instance_type) is None
    assert prices.monthly(region, instance_type, 3) is None
    quote = prices.quote(region, instance_type, 0, 1)
    assert quote["hourly"] is None and quote["monthly_max"] is None
    assert prices.UNKNOWN in quote["text"]


def test_the_always_on_floor_is_said_in_money():
    assert prices.sentence("us-east-1", "ml.g5.xlarge", 1, 1).startswith(
        "keeps 1 × ml.g5.xlarge running: about $1.41/h, $1,028/month even when idle")


def test_scale_to_zero_says_nothing_is_billed_while_idle():
    quote = prices.quote("us-east-1", "ml.g5.xlarge", 0, 2)
    assert quote["monthly_min"] == 0 and quote["hourly_max"] == pytest.approx(2.816)
    assert quote["text"].startswith("scales to zero: nothing billed while idle; $1.41/h per instance")
    assert "$2.82/h" in quote["text"]


def test_the_stack_rates():
    assert prices.stack_rate("us-east-1", "s3_gb_month") == pytest.approx(0.023)
    assert prices.stack_rate("us-east-1", "codebuild_minute") == pytest.approx(0.02)
    assert prices.stack_rate("mars-north-1", "s3_gb_month") is None


def test_a_malformed_table_is_refused_saying_so():
    with pytest.raises(ValueError, match="malformed"):
        prices.parse({"as_of": "2026-01-01"})
    good = json.loads(prices.TABLE_PATH.read_text())
    assert prices.dump(prices.parse(good))["sagemaker_hosting"] == good["sagemaker_hosting"]


def test_aws_setup_says_what_the_stack_costs_from_the_same_table():
    lines = prices.stack_lines("us-east-1")
    assert lines[0] == f"what the stack costs in us-east-1 (prices of {prices.table().as_of}, USD):"
    assert "S3 store: $0.023 per GB-month" in lines[1]
    assert "ECR worker image: $0.10 per GB-month (an image of ~8 GB: $0.80/month" in lines[2]
    assert "CodeBuild: $0.020 per build-minute (a 20-minute image build: $0.40)" in lines[3]
    assert "CloudWatch Logs: $0.50 per GB written, $0.03 per GB-month kept" in lines[4]
    unknown = prices.stack_lines("ap-south-2")
    assert "S3 store: price unknown per GB-month" in unknown[1] and "$" not in unknown[1]
