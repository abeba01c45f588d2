"""The Endpoints section says when an endpoint stops by itself (core/idle_stop.py): a local endpoint published
with idle_stop_minutes shows "stops after N min idle" while it runs (the stopped-for-idleness line is
tests/js/idle_stop.test.mjs's: the idle stop's clock is not the browser's to move)."""

from __future__ import annotations

import pytest
from harness.browser import open_sidebar
from harness.envs import publish_environment, wait_endpoint
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "idle"}}}


def test_a_running_endpoint_says_after_how_long_idle_it_stops(page: Page, client):
    template, environment, _ = publish_environment(client, PROMPT, {"kind": "local", "idle_stop_minutes": 45})
    try:
        # The publish deploys it (and holds the environment's lease until the endpoint has settled).
        assert wait_endpoint(client, environment)["state"] == "InService"
        open_sidebar(page)
        row = page.get_by_test_id("sagemaker-endpoints").locator(
            f'[data-testid="sagemaker-endpoint-row"][data-endpoint="{environment}"]')
        expect(row.get_by_test_id("sagemaker-endpoint-idle")).to_have_text("stops after 45 min idle", timeout=120_000)
        assert client.get(f"/sagemaker/endpoints/{environment}").json()["idle_stop_minutes"] == 45
    finally:
        client.delete(f"/sagemaker/endpoints/{environment}")
        client.delete(f"/sagemaker/environments/{environment}?force=true")
        client.delete(f"/sagemaker/templates/{template}")
    assert page.console.errors_from("sagemaker") == []
