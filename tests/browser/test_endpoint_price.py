"""The endpoint form's safe defaults and its price, in the real ComfyUI frontend (pinned and newest): a new
SageMaker endpoint is async with autoscaling min 0, max 1, and says it bills nothing while idle; a min above
0, or no autoscaling, is said in money per hour and per month before Publish deploys it; a type the dated
table lacks is "price unknown". The prices are core/prices.py's, through GET /sagemaker/prices."""

from __future__ import annotations

import re

import pytest
from comfyui_sagemaker.core import prices
from harness.browser import new_page, open_sidebar
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


@pytest.fixture
def priced(browser, aws_designer):
    """The designer's ComfyUI (its configuration put back after: conftest's aws_designer) in us-east-1."""
    r = aws_designer.client().put("/sagemaker/config", json={"changes": {"region": "us-east-1"}})
    assert r.status_code == 200, r.text
    page = new_page(browser, aws_designer)
    try:
        open_sidebar(page)
        yield page
    finally:
        page.context.close()


def test_a_new_sagemaker_endpoint_scales_to_zero_and_its_price_is_shown(priced):
    page = priced
    page.get_by_test_id("sagemaker-environments-new").click()
    dialog = page.get_by_test_id("sagemaker-environment-dialog")
    dialog.get_by_test_id("sagemaker-endpoint-kind").select_option("sagemaker")
    expect(dialog.get_by_test_id("sagemaker-endpoint-mode")).to_have_value("async")
    expect(dialog.get_by_test_id("sagemaker-endpoint-autoscaling")).to_be_checked()
    expect(dialog.get_by_test_id("sagemaker-endpoint-min")).to_have_value("0")
    expect(dialog.get_by_test_id("sagemaker-endpoint-max")).to_have_value("1")
    price = dialog.get_by_test_id("sagemaker-endpoint-price")
    expect(price).to_contain_text("scales to zero: nothing billed while idle; $1.41/h per instance")
    expect(price).to_contain_text(f"prices of {prices.table().as_of}")

    dialog.get_by_test_id("sagemaker-endpoint-min").fill("1")  # a floor: said in money
    expect(price).to_contain_text("keeps 1 × ml.g5.xlarge running: about $1.41/h, $1,028/month even when idle")
    expect(price).to_have_class(re.compile(r"\bsagemaker-warning\b"))

    dialog.get_by_test_id("sagemaker-endpoint-autoscaling").uncheck()  # always on: the initial count all month
    dialog.get_by_test_id("sagemaker-endpoint-count").fill("2")
    expect(price).to_contain_text("keeps 2 × ml.g5.xlarge running: about $2.82/h, $2,056/month even when idle")
    dialog.get_by_test_id("sagemaker-endpoint-mode").select_option("realtime")
    expect(price).to_contain_text("keeps 2 × ml.g5.xlarge running")

    dialog.get_by_test_id("sagemaker-endpoint-instance-type").fill("ml.g6e.48xlarge")
    expect(price).to_contain_text("price unknown")
    dialog.get_by_test_id("sagemaker-endpoint-kind").select_option("local")
    expect(price).to_be_hidden()
    # The narrow sidebar cuts the select's text: the kind chosen is its tooltip (issue 32).
    kind = dialog.get_by_test_id("sagemaker-endpoint-kind")
    expect(kind).to_have_attribute("title", "local (a worker on this computer)")
    dialog.get_by_test_id("sagemaker-dialog-cancel").click()
    expect(dialog).to_have_count(0)


# Capacity fallback: the fallback types typed after the instance type are each priced before Publish, in their
# order, and a list the server would refuse is said in the form first.

def test_each_fallback_type_is_priced_in_its_order_and_a_repeat_is_refused(priced):
    page = priced
    page.get_by_test_id("sagemaker-environments-new").click()
    dialog = page.get_by_test_id("sagemaker-environment-dialog")
    dialog.get_by_test_id("sagemaker-endpoint-kind").select_option("sagemaker")
    fallback = dialog.get_by_test_id("sagemaker-endpoint-fallback-types")
    expect(fallback).to_have_value("")
    lines = dialog.get_by_test_id("sagemaker-endpoint-fallback-price")
    expect(lines).to_have_count(0)

    fallback.fill("ml.g6.xlarge, ml.g4dn.xlarge")
    expect(lines).to_have_count(2)
    for line, instance_type in zip((lines.nth(0), lines.nth(1)), ("ml.g6.xlarge", "ml.g4dn.xlarge"), strict=True):
        expect(line).to_have_text(f"if it falls back to {instance_type}: "
                                  f"{prices.sentence('us-east-1', instance_type, 0, 1)}")
    price = dialog.get_by_test_id("sagemaker-endpoint-price")
    expect(price).to_contain_text("scales to zero: nothing billed while idle; $1.41/h per instance")  # the first

    fallback.fill("ml.g6.xlarge, ml.g5.xlarge")  # the instance type again
    error = dialog.get_by_test_id("sagemaker-endpoint-error")
    expect(error).to_have_text("ml.g5.xlarge is listed twice")
    expect(price).to_be_hidden()
    fallback.fill("")
    expect(error).to_be_hidden()
    expect(lines).to_have_count(0)
    dialog.get_by_test_id("sagemaker-dialog-cancel").click()
    expect(dialog).to_have_count(0)
