"""Capacity fallback in the endpoint form, in the real ComfyUI frontend (pinned and newest): the fallback types
typed after the instance type are each priced before Publish (core/prices.py through GET /sagemaker/prices),
in their order, and a list the server would refuse is said in the form first."""

from __future__ import annotations

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
