"""The Comfy API v2 routes added for comfy-sdk (the workflow a job ran, deleting an asset, the status filter)
through the gateway as users run it, on the session ComfyUI's folder store and local endpoint: the gateway
serves the one route table (server_routes/v2.py), so these only check that the SDK's calls reach it there.
The rules themselves are tested in-process: tests/unit/test_v2_complete.py."""

from __future__ import annotations

import pytest
from harness.gateway import Gateway
from harness.images import png
from harness.prompts import scale_prompt

pytestmark = pytest.mark.comfyui


@pytest.fixture(scope="module")
def gateway(comfyui, tmp_path_factory):
    gw = Gateway(tmp_path_factory.mktemp("gateway"), config_dir=comfyui.user_dir / "__sagemaker").start()
    try:
        yield gw
    finally:
        gw.stop()


def test_the_sdk_reads_a_jobs_workflow_and_deletes_its_asset_through_the_gateway(gateway, v2, monkeypatch):
    from comfy_sdk import Comfy
    from comfy_sdk.exceptions import NotFound

    _, env, _, _ = v2
    monkeypatch.setenv("COMFY_BASE_URL", f"{gateway.url}/sagemaker/v2/{env}")
    with Comfy(api_key=gateway.token, timeout=120) as sdk:
        asset = sdk.assets.from_bytes(png(3, 5, (20, 40, 220)), filename="gw-del.png")
        workflow = sdk.workflows.from_json(scale_prompt("unused.png", factor=0.5, prefix="gwdel"))
        workflow.set_input("1", "image", asset)
        job = sdk.run(workflow, timeout=300)
        got = job.get_workflow()
        assert got.format == "api" and got.graph["2"]["class_type"] == "SMTestScale"
        assert got.graph["1"]["inputs"]["image"].startswith("sagemaker-")  # the asset, as the file it became
        sdk.assets.delete(asset.id)
        with pytest.raises(NotFound):
            sdk.assets.delete(asset.id)
    listed = gateway.get(f"/sagemaker/v2/{env}/api/v2/jobs", params={"status": "succeeded", "limit": 100}).json()
    assert job.id in [j["id"] for j in listed["jobs"]] and {j["status"] for j in listed["jobs"]} == {"succeeded"}
