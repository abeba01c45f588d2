"""The Comfy API v2 through the extension (<ComfyUI>/sagemaker/v2/<environment>), driven by Comfy's own SDK
(comfy-sdk) on a real local endpoint, end to end: an image asset uploaded, a graph run, events followed, outputs
downloaded and their pixels checked. Everything else the v2 face does (templates by their parameters, cancels,
event streams, idempotency keys, refusals, who may do what) is tests/unit/test_jobs_v2.py's, in-process on
FakeEndpoints."""

from __future__ import annotations

import pytest
from blake3 import blake3
from harness.images import pixels, png
from harness.prompts import scale_prompt

pytestmark = pytest.mark.comfyui

@pytest.fixture
def sdk(v2, monkeypatch):
    from comfy_sdk import Comfy

    monkeypatch.setenv("COMFY_BASE_URL", v2[3])
    monkeypatch.delenv("COMFY_API_KEY", raising=False)
    with Comfy(timeout=60) as client:
        yield client


def close_to(data: bytes, color, tolerance=1) -> bool:
    return all(abs(a - b) <= tolerance for px in pixels(data) for a, b in zip(px, color, strict=True))


def test_the_sdk_uploads_an_asset_runs_a_graph_follows_it_and_downloads_the_pixels(sdk, v2):
    from comfy_sdk import OutputReady, Progress, StatusChange

    image = png(6, 4, (120, 60, 240))
    asset = sdk.assets.from_bytes(image, filename="photo.png", content_type="image/png")
    workflow = sdk.workflows.from_json(scale_prompt("placeholder.png", factor=0.5, prefix="v2ext"))
    workflow.set_input("1", "image", asset)
    job = sdk.submit(workflow)
    assert job.status in ("queued", "running") and asset.id and asset.hash == "blake3:" + blake3(image).hexdigest()
    events = list(job.events())
    assert isinstance(events[0], StatusChange) and events[-1] == StatusChange(status="succeeded")
    assert any(isinstance(e, Progress) for e in events)
    ready = [e.output for e in events if isinstance(e, OutputReady)]
    assert [o.node_id for o in ready] == ["3"]
    job.result()
    (output,) = job.get_outputs("3")
    data = output.to_bytes()
    assert output.type == "image" and output.content_type == "image/png" and output.size_bytes == len(data)
    assert close_to(data, (60, 30, 120))
    assert output.to_bytes(range=(0, 9)) == data[:10]  # a Range request
    # The same run is an execution of the environment, as every other run.
    _, env, _, _ = v2
    record = v2[0].get(f"/sagemaker/executions/{job.id}").json()
    assert record["environment"] == env and record["state"] == "succeeded" and record["api"] == "v2"
    # The uploaded bytes are found by their blake3 hash: a second upload of them mints over the same blob.
    again = sdk.assets.from_bytes(image, filename="again.png")
    again.commit()
    assert again.id != asset.id and again.created_new is False  # minted through from-hash, no bytes sent
