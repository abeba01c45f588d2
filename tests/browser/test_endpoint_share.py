"""The Endpoints section's Share switch in the real ComfyUI frontend: this ComfyUI's local endpoint, shared, is
started again for the team (its worker on the chosen address, registered in the store), and unshared is this
ComfyUI's own again; the published environment is left as it was. What the team sees of it is
tests/integration/test_shared_endpoints.py's."""

from __future__ import annotations

import json
import re

import pytest
from harness.browser import open_sidebar
from harness.envs import unique, wait_task
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


def test_the_share_switch_shares_this_comfyuis_local_endpoint_and_takes_it_back(page: Page, client, comfyui):
    # The session's ComfyUI is shared with other modules: its configuration file is put back as it was after.
    config_file = comfyui.user_dir / "__sagemaker" / "config.json"
    before = config_file.read_text() if config_file.exists() else None
    template, environment = unique("T"), unique("E")
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "share"}}}
    assert client.post("/sagemaker/templates", json={"name": template, "workflow": prompt,
                                                      "prompt": prompt}).status_code == 201
    r = client.put("/sagemaker/config", json={"changes": {"share_host": "127.0.0.1"}})
    assert r.status_code == 200, r.text
    try:
        r = client.post("/sagemaker/environments", json={"name": environment, "templates": [template]})
        assert r.status_code == 202, r.text
        assert wait_task(client, r.json()["task"]["id"])["state"] == "succeeded"
        assert client.post("/sagemaker/endpoints", json={"environment": environment}).status_code == 202
        open_sidebar(page)
        row = page.get_by_test_id("sagemaker-endpoints").locator(
            f'[data-testid="sagemaker-endpoint-row"][data-endpoint="{environment}"]')
        expect(row).to_have_attribute("data-state", "InService", timeout=120_000)
        share = row.get_by_test_id("sagemaker-endpoint-share")
        expect(share).not_to_be_checked()

        share.check()
        expect(row).to_have_attribute("data-state", re.compile("Updating|InService"))
        expect(row).to_have_attribute("data-state", "InService", timeout=120_000)
        expect(row.get_by_test_id("sagemaker-endpoint-share")).to_be_checked()
        expect(row.get_by_test_id("sagemaker-endpoint-instances")).to_have_text(
            "a worker on this machine, shared with the team")
        assert client.get(f"/sagemaker/endpoints/{environment}").json()["shared"] is True
        manifest = client.get(f"/sagemaker/environments/{environment}").json()
        assert json.dumps(manifest).count('"shared"') == 0, manifest  # the environment stays as published

        row.get_by_test_id("sagemaker-endpoint-share").uncheck()
        # Its own again once the private worker serves: the view says so (not the box the click unticked).
        expect(row.get_by_test_id("sagemaker-endpoint-instances")).to_have_text("a worker on this machine",
                                                                                timeout=120_000)
        expect(row).to_have_attribute("data-state", "InService", timeout=120_000)
        expect(row.get_by_test_id("sagemaker-endpoint-share")).not_to_be_checked()
        assert client.get(f"/sagemaker/endpoints/{environment}").json()["shared"] is False
    finally:
        client.delete(f"/sagemaker/endpoints/{environment}")
        client.delete(f"/sagemaker/environments/{environment}?force=true")
        client.delete(f"/sagemaker/templates/{template}")
        if before is None:
            config_file.unlink(missing_ok=True)
        else:
            config_file.write_text(before)
        assert client.post("/sagemaker/config/reload").status_code == 200
    assert page.console.errors_from("sagemaker") == []
