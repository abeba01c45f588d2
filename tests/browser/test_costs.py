"""The sidebar's Costs section in the real ComfyUI frontend: a row per running endpoint (a local worker: $0/h),
the store's bytes, and the plot of the last 30 days drawn in the panel."""

from __future__ import annotations

import pytest
from harness.browser import open_sidebar
from harness.envs import publish_environment, wait_endpoint
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "costs"}}}


@pytest.fixture
def endpoint(client):
    """A local endpoint of this test's own (never the session's shared environment: that one belongs to the
    integration tier's ComfyUI, and a browser fixture asking for it would tie it to a frontend's)."""
    template, environment, _ = publish_environment(client, PROMPT, {"kind": "local"})
    try:
        assert wait_endpoint(client, environment)["state"] == "InService"
        yield environment
    finally:
        client.delete(f"/sagemaker/endpoints/{environment}")
        client.delete(f"/sagemaker/environments/{environment}?force=true")
        client.delete(f"/sagemaker/templates/{template}")


def test_the_costs_section_shows_a_row_per_running_endpoint_and_the_plot(page: Page, client, endpoint):
    open_sidebar(page)
    section = page.get_by_test_id("sagemaker-costs")
    expect(section).to_be_visible(timeout=15_000)
    running = [e["name"] for e in client.get("/sagemaker/endpoints").json()["endpoints"] if e["state"] == "InService"]
    assert endpoint in running
    section.get_by_test_id("sagemaker-costs-refresh").click()  # computed now, not the answer kept a minute
    for name in running:
        row = section.locator(f'[data-testid="sagemaker-cost-row"][data-endpoint="{name}"]')
        expect(row).to_have_count(1)
        expect(row.get_by_test_id("sagemaker-cost-hourly")).to_have_text("1 local worker · $0.00/h")
        expect(row.get_by_test_id("sagemaker-cost-spent")).to_contain_text("this month $0.00")
    expect(section.get_by_test_id("sagemaker-costs-totals")).to_contain_text("$0.00/h")
    expect(section.get_by_test_id("sagemaker-costs-storage")).to_contain_text("Storage (folder)")
    plot = section.get_by_test_id("sagemaker-costs-plot")
    expect(plot).to_be_visible()
    expect(plot.locator("rect")).to_have_count(30)  # a bar per day
    expect(plot.locator("polyline")).to_have_count(1)  # instances over time
    expect(section.get_by_test_id("sagemaker-costs-legend")).to_contain_text("Last 30 days: cost per day")
    assert page.console.errors_from("sagemaker") == []
