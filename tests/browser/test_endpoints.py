"""The sidebar's Endpoints section in the real ComfyUI frontend: an endpoint of a published environment is
listed through Creating (what it is doing said as it goes) to InService with the version it serves, its
instances, its start-up steps and its log; Stop and Start keep its environment."""

from __future__ import annotations

import re

import pytest
from harness.browser import open_sidebar
from harness.envs import unique, wait_task
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


def console_errors(page: Page) -> list[str]:
    return page.console.errors_from("sagemaker")


# Every text the rows' "what it is doing" line showed, from now on (it lives only while an endpoint starts).
SEEN_WHILE_STARTING = """() => {
    window.__smDoing = [];
    if (window.__smDoingObserved) return;
    window.__smDoingObserved = true;
    const record = () => document.querySelectorAll('[data-testid="sagemaker-endpoint-activity"]')
        .forEach((e) => { if (!window.__smDoing.includes(e.textContent)) window.__smDoing.push(e.textContent); });
    new MutationObserver(record).observe(document.body, { childList: true, subtree: true, characterData: true });
}"""


def test_an_endpoint_is_listed_from_creating_to_in_service_with_its_steps_and_log(page: Page, client):
    template, environment = unique("T"), unique("E")
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "ep"}}}
    workflow = {"nodes": [], "links": [], "extra": {}, "version": 0.4}
    assert client.post("/sagemaker/templates", json={"name": template, "workflow": workflow,
                                                      "prompt": prompt}).status_code == 201
    try:
        r = client.post("/sagemaker/environments", json={"name": environment, "templates": [template]})
        assert r.status_code == 202, r.text
        assert wait_task(client, r.json()["task"]["id"])["state"] == "succeeded"
        open_sidebar(page)
        section = page.get_by_test_id("sagemaker-endpoints")
        expect(section).to_be_visible()
        row = section.locator(f'[data-testid="sagemaker-endpoint-row"][data-endpoint="{environment}"]')
        expect(row).to_have_count(0)

        page.evaluate(SEEN_WHILE_STARTING)
        assert client.post("/sagemaker/endpoints", json={"environment": environment}).status_code == 202
        # Creating: listed at once (its event), with what it is doing in words as it goes.
        expect(row).to_have_attribute("data-state", re.compile("Creating|InService"))
        expect(row).to_have_attribute("data-state", "InService", timeout=120_000)
        said = page.evaluate("() => window.__smDoing")
        assert said and all(text.strip() for text in said), said
        expect(row.get_by_test_id("sagemaker-endpoint-activity")).to_have_count(0)
        expect(row.get_by_test_id("sagemaker-endpoint-version")).to_have_text("v1")
        expect(row.get_by_test_id("sagemaker-endpoint-instances")).to_have_text("a worker on this machine")
        # Its start-up, step by step, as the worker timed it.
        expect(row.get_by_test_id("sagemaker-endpoint-phases")).to_contain_text(re.compile(r"\d s"))

        # Its log, as GET /endpoints/{name}/logs has it.
        row.get_by_test_id("sagemaker-endpoint-log-toggle").click()
        log = row.get_by_test_id("sagemaker-endpoint-log")
        expect(log).not_to_have_text("Loading...")
        expect(log).not_to_have_text("(nothing logged yet)")
        shown = [line for line in log.inner_text().splitlines() if line.strip()]
        logged = client.get(f"/sagemaker/endpoints/{environment}/logs?tail=5000").json()["logs"]
        assert shown and shown[0] in logged, shown[:3]
        # ... about the work: the extension's own status polls are not in it (issue 32).
        assert '"GET /status ' not in logged and '"GET /ping ' not in logged
        row.get_by_test_id("sagemaker-endpoint-log-toggle").click()
        expect(log).to_have_count(0)

        # Stop asks first, saying what it ends (issue 32: it stopped at one click, killing runs unannounced);
        # it keeps the environment and the endpoint (Stopped); Start brings it back to InService.
        row.get_by_test_id("sagemaker-endpoint-stop").click()
        dialog = page.get_by_test_id("sagemaker-endpoint-stop-dialog")
        expect(dialog.get_by_test_id("sagemaker-endpoint-stop-note")).to_have_text(
            f"No run is in flight on {environment}. Start brings it back later.")
        dialog.get_by_test_id("sagemaker-dialog-ok").click()
        expect(row).to_have_attribute("data-state", "Stopped", timeout=60_000)
        assert client.get(f"/sagemaker/endpoints/{environment}").json()["state"] == "Stopped"
        expect(row.get_by_test_id("sagemaker-endpoint-stop")).to_have_count(0)
        row.get_by_test_id("sagemaker-endpoint-start").click()
        expect(row).to_have_attribute("data-state", re.compile("Creating|InService"))
        expect(row).to_have_attribute("data-state", "InService", timeout=120_000)
        expect(row.get_by_test_id("sagemaker-endpoint-start")).to_have_count(0)
        assert client.get(f"/sagemaker/environments/{environment}").status_code == 200

        # Deleted: the row goes.
        assert client.delete(f"/sagemaker/endpoints/{environment}").status_code == 204
        expect(row).to_have_count(0, timeout=60_000)
    finally:
        client.delete(f"/sagemaker/endpoints/{environment}")
        client.delete(f"/sagemaker/environments/{environment}?force=true")
        client.delete(f"/sagemaker/templates/{template}")
    assert console_errors(page) == []
