"""Rollback and an environment's history in the real ComfyUI frontend, on a local endpoint: the Endpoints
section's Rollback asks first, naming the version it goes back to, and the endpoint's worker then serves that
version (its own /status says so) with no blob written to the store; the Environments section's history says
which version serves, who published each and what it changed."""

from __future__ import annotations

import json
import re

import pytest
import requests
from comfyui_sagemaker.core.worker_contract import TOKEN_HEADER
from harness.browser import open_sidebar
from harness.envs import unique, wait_endpoint, wait_task
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "rb"}}}


def publish(client, environment: str, templates: list[str], endpoint: dict | None) -> None:
    body = {"name": environment, "templates": templates, **({"endpoint": endpoint} if endpoint else {})}
    r = client.post("/sagemaker/environments", json=body)
    assert r.status_code == 202, r.text
    assert wait_task(client, r.json()["task"]["id"])["state"] == "succeeded"


def blobs(comfyui) -> dict[str, int]:
    """Every blob in the ComfyUI's folder store, with the time it was last written."""
    folder = comfyui.user_dir / "__sagemaker" / "store" / "blobs" / "sha256"
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} if folder.exists() else {}


def served_version(comfyui, environment: str) -> int:
    """The environment version the endpoint's worker itself says it materialised (its /status)."""
    folder = comfyui.user_dir / "__sagemaker" / "endpoints" / environment.lower()
    state = json.loads((folder / "state.json").read_text())
    status = requests.get(state["url"] + "/status", headers={TOKEN_HEADER: state["token"]}, timeout=30).json()
    return status["environment"]["version"]


def test_rollback_from_the_endpoints_section_serves_the_previous_version_and_uploads_nothing(page: Page, client,
                                                                                            comfyui):
    first, second, environment = unique("T"), unique("T"), unique("E")
    for template in (first, second):
        r = client.post("/sagemaker/templates", json={"name": template, "workflow": PROMPT, "prompt": PROMPT})
        assert r.status_code == 201, r.text
    try:
        publish(client, environment, [first], None)  # v1: published only
        publish(client, environment, [first, second], {"kind": "local"})  # v2: deployed
        assert wait_endpoint(client, environment)["state"] == "InService"
        assert served_version(comfyui, environment) == 2
        before = blobs(comfyui)

        open_sidebar(page)
        row = page.get_by_test_id("sagemaker-endpoints").locator(
            f'[data-testid="sagemaker-endpoint-row"][data-endpoint="{environment}"]')
        expect(row.get_by_test_id("sagemaker-endpoint-version")).to_have_text("v2")
        row.get_by_test_id("sagemaker-endpoint-rollback").click()
        dialog = page.get_by_test_id("sagemaker-endpoint-rollback-dialog")
        expect(dialog).to_contain_text(f"Roll back {environment} to version 1?")
        expect(dialog.get_by_test_id("sagemaker-endpoint-rollback-note")).to_contain_text("nothing is uploaded")
        dialog.get_by_test_id("sagemaker-dialog-ok").click()
        expect(dialog).to_have_count(0)
        expect(row).to_have_attribute("data-state", re.compile("Updating|InService"))
        expect(row.get_by_test_id("sagemaker-endpoint-version")).to_have_text("v1")
        expect(row).to_have_attribute("data-state", "InService", timeout=120_000)
        assert served_version(comfyui, environment) == 1
        assert blobs(comfyui) == before  # no blob written: not a new one, not one written again
        # v1 is its oldest: no Rollback to offer now
        expect(row.get_by_test_id("sagemaker-endpoint-rollback")).to_have_count(0)

        # The history: v1 serves; v2 added the second template; both published by this ComfyUI.
        environments = page.get_by_test_id("sagemaker-environments")
        environments.get_by_test_id("sagemaker-environments-refresh").click()
        env_row = environments.locator(f'[data-testid="sagemaker-environment-row"][data-environment="{environment}"]')
        env_row.get_by_test_id("sagemaker-environment-history-open").click()
        history = page.get_by_test_id("sagemaker-environment-history")
        items = history.get_by_test_id("sagemaker-environment-history-item")
        expect(items).to_have_count(2)
        expect(items.nth(0)).to_have_attribute("data-version", "2")
        expect(items.nth(0)).to_have_attribute("data-serving", "false")
        expect(items.nth(1)).to_have_attribute("data-serving", "true")
        changes = items.nth(0).get_by_test_id("sagemaker-environment-history-changes")
        expect(changes).to_contain_text(f"+template {second}")
        publisher = client.get(f"/sagemaker/environments/{environment}/versions").json()["versions"][0]["published_by"]
        expect(items.nth(0)).to_contain_text(f"by {publisher['name']}")
        assert page.console.errors_from("sagemaker") == []
    finally:
        client.delete(f"/sagemaker/endpoints/{environment}")
        client.delete(f"/sagemaker/environments/{environment}?force=true")
        for template in (first, second):
            client.delete(f"/sagemaker/templates/{template}")
