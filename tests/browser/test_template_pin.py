"""Pinning a template to an environment version from the sidebar's Templates list, in the real ComfyUI frontend:
each bound template's row says its version (pinned, or following the newest) and whether its environment's
endpoint serves it; the pin control changes it, and the server then refuses runs the endpoint cannot serve. A
succeeded run's "Use this run as the proof" gives the template its proof, and the row says where it stands."""

from __future__ import annotations

import pytest
from harness.browser import open_sidebar
from harness.envs import unique, wait_endpoint, wait_task
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "pin"}}}


def publish(client, environment: str, template: str) -> int:
    r = client.post("/sagemaker/environments", json={"name": environment, "templates": [template], "bind": True})
    assert r.status_code == 202, r.text
    task = wait_task(client, r.json()["task"]["id"])
    assert task["state"] == "succeeded", task
    return task["result"]["version"]


def test_the_pin_control_pins_and_the_row_says_what_the_endpoint_serves(page: Page, client):
    template, environment = unique("T"), unique("E")
    workflow = {"nodes": [], "links": [], "extra": {}, "version": 0.4}
    assert client.post("/sagemaker/templates", json={"name": template, "workflow": workflow,
                                                      "prompt": PROMPT}).status_code == 201
    try:
        assert publish(client, environment, template) == 1
        assert publish(client, environment, template) == 2
        open_sidebar(page)
        page.get_by_test_id("sagemaker-templates-refresh").click()
        row = page.locator(f'[data-testid="sagemaker-template-row"][data-template="{template}"]')
        pin = row.get_by_test_id("sagemaker-template-pin")
        serving = row.get_by_test_id("sagemaker-template-serving")
        # Unpinned: it follows the newest; no endpoint yet.
        expect(pin).to_have_value("")
        expect(pin.locator("option:checked")).to_have_text("follows newest (v2)")
        expect(serving).to_have_attribute("data-serving", "none")

        assert client.post("/sagemaker/endpoints", json={"environment": environment}).status_code == 202
        assert wait_endpoint(client, environment)["state"] == "InService"
        # The endpoint's own event brings the row up to date: v2 is served.
        expect(serving).to_have_attribute("data-serving", "served", timeout=30_000)

        # Pinned to v1 while the endpoint serves v2: the row says runs are refused, and the server refuses them.
        pin.select_option("1")
        expect(row.get_by_test_id("sagemaker-template-env-version")).to_have_attribute("data-pinned", "1")
        expect(serving).to_have_attribute("data-serving", "mismatch")
        expect(serving).to_have_text("endpoint serves v2: runs refused")
        assert client.get(f"/sagemaker/templates/{template}").json()["environment_version"] == 1
        r = client.post("/sagemaker/executions", json={"prompt": PROMPT, "template": template})
        assert r.status_code == 409 and r.json()["error"]["code"] == "endpoint_version_mismatch", r.text

        # Pinned to the version served, then following again.
        row.get_by_test_id("sagemaker-template-pin").select_option("2")
        expect(row.get_by_test_id("sagemaker-template-env-version")).to_have_attribute("data-pinned", "2")
        expect(serving).to_have_attribute("data-serving", "served")
        row.get_by_test_id("sagemaker-template-pin").select_option("")
        expect(row.get_by_test_id("sagemaker-template-env-version")).to_have_attribute("data-pinned", "")
        assert client.get(f"/sagemaker/templates/{template}").json()["environment_version"] is None

        # Its proof (issue 30): none yet; "Use this run as the proof" in a succeeded run's detail makes one, and
        # the row says it has not run on the version served (the next redeploy runs it before traffic moves).
        proof = row.get_by_test_id("sagemaker-template-proof")
        expect(proof).to_have_attribute("data-proof", "none")
        r = client.post("/sagemaker/executions", json={"prompt": PROMPT, "template": template})
        assert r.status_code == 202, r.text
        execution_id = r.json()["execution_id"]
        run = page.locator(f'[data-testid="sagemaker-execution-row"][data-execution="{execution_id}"]')
        expect(run).to_have_attribute("data-state", "succeeded", timeout=60_000)
        run.click()
        page.locator(f'[data-testid="sagemaker-execution-detail"][data-execution="{execution_id}"]') \
            .get_by_test_id("sagemaker-execution-proof").click()
        expect(proof).to_have_attribute("data-proof", "unproven")
        expect(proof).to_have_text("proof not run on this version")
        assert client.get(f"/sagemaker/templates/{template}").json()["proof"]["execution"] == execution_id
        assert not page.console.errors_from("sagemaker")
    finally:
        client.delete(f"/sagemaker/endpoints/{environment}")
        client.delete(f"/sagemaker/templates/{template}")
        client.delete(f"/sagemaker/environments/{environment}?force=true")
