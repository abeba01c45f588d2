"""The Comfy API v2 through the extension (<ComfyUI>/sagemaker/v2/<environment>), driven by Comfy's own SDK
(comfy-sdk) on a local endpoint: an image asset uploaded, a graph run, events followed, outputs downloaded
and their pixels checked, a job cancelled; a template run by its parameters; and the protocol's refusals."""

from __future__ import annotations

import time
import uuid

import httpx
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


def test_a_template_runs_by_its_parameters_with_an_asset_for_its_image(sdk, v2):
    client, env, params, base = v2
    asset = sdk.assets.from_bytes(png(3, 3, (100, 200, 40)), filename="p.png")
    asset.commit()
    r = httpx.post(f"{base}/api/v2/jobs", json={"template": params, "inputs": {
        "photo": asset.as_reference(), "factor": 0.25}}, timeout=30)
    assert r.status_code == 201, r.text
    job = sdk.jobs.get(r.json()["id"]).result()
    (output,) = job.get_outputs("4")
    assert close_to(output.to_bytes(), (25, 50, 10))
    bad = httpx.post(f"{base}/api/v2/jobs", json={"template": params, "inputs": {"factor": 7}}, timeout=30)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_inputs", bad.text
    assert set(bad.json()["error"]["details"]["fields"]) == {"factor", "photo"}


def test_a_job_is_cancelled_and_the_endpoint_goes_on(sdk, v2, tmp_path):
    workflow = sdk.workflows.from_json(scale_prompt("v2-seed.png", prefix="held", wait_for=str(tmp_path / "never"),
                                                    timeout=60))
    job = sdk.submit(workflow)
    deadline = time.monotonic() + 60
    while job.refresh().status != "running":
        assert time.monotonic() < deadline, job.status
        time.sleep(0.1)
    assert job.cancel().status == "canceled"
    assert job.wait(timeout=30).status == "canceled" and job.cancel().status == "canceled"  # idempotent
    after = sdk.run(sdk.workflows.from_json(scale_prompt("v2-seed.png", factor=0.1, prefix="after")), timeout=60)
    assert after.status == "succeeded"


def test_an_event_stream_left_and_joined_again_ends_with_the_job(sdk, v2, tmp_path):
    _, _, _, base = v2
    release = tmp_path / "release"
    job = sdk.submit(sdk.workflows.from_json(scale_prompt("v2-seed.png", prefix="sse", wait_for=str(release),
                                                          timeout=60)))
    url = f"{base}/api/v2/jobs/{job.id}/events"
    with httpx.stream("GET", url, timeout=30) as first:  # the client leaves after the first event
        line = next(first.iter_lines())
        assert line == "event: status"
    with httpx.stream("GET", url, timeout=60) as second:
        lines = second.iter_lines()
        assert next(lines) == "event: status"
        release.write_text("go")
        seen = [line for line in lines if line.startswith("event: ")]
    assert seen[-1] == "event: status" and "event: output" in seen
    assert sdk.jobs.get(job.id).status == "succeeded"


def error(r, status, code):
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code, r.text
    return r.json()["error"]


def test_the_protocols_refusals(v2):
    from comfy_low import ComfyLow
    from comfy_low.errors import HashMismatch

    _, _, _, base = v2
    jobs = f"{base}/api/v2/jobs"
    ui = {"nodes": [{"id": 1, "type": "LoadImage"}], "links": [], "last_node_id": 1}
    error(httpx.post(jobs, json={"workflow": ui}), 422, "workflow_format_ui")
    lacking = scale_prompt("v2-seed.png")
    lacking["2"]["class_type"] = "NoSuchNodeAnywhere"
    details = error(httpx.post(jobs, json={"workflow": lacking}), 422, "invalid_workflow")["details"]
    assert details["node_errors"]["2"][0]["class_type"] == "NoSuchNodeAnywhere"
    model = scale_prompt("v2-seed.png")
    model["2"]["inputs"]["lora_name"] = "not-in-the-environment.safetensors"
    details = error(httpx.post(jobs, json={"workflow": model}), 422, "invalid_workflow")["details"]
    assert details["node_errors"]["2"][0]["field"] == "lora_name"
    ref = {"__type": "core/ASSET", "info": {"id": str(uuid.uuid4())}}
    asset_missing = scale_prompt("x.png")
    asset_missing["1"]["inputs"]["image"] = ref
    error(httpx.post(jobs, json={"workflow": asset_missing}), 422, "missing_asset")
    assert "169.254.169.254" in error(httpx.post(jobs, json={"workflow": scale_prompt("v2-seed.png"),
                                                             "webhook_url": "http://169.254.169.254/latest/"}),
                                      422, "webhook_refused")["message"]
    error(httpx.get(f"{jobs}/20250101T000000000000-00000000"), 404, "not_found")
    error(httpx.get(f"{base}/api/v2/assets/{uuid.uuid4()}"), 404, "not_found")
    assert httpx.head(f"{base}/api/v2/assets/by-hash/blake3:{'0' * 64}").status_code == 404
    error(httpx.post(f"{base}/api/v2/assets/from-hash", json={"hash": f"blake3:{'0' * 64}"}), 404, "blob_not_found")
    error(httpx.post(jobs, content=b"{not json", headers={"Content-Type": "application/json"}), 422, "bad_request")
    # An asset whose bytes are not the expected hash: refused, nothing kept under their real hash.
    data = png(5, 5, (1, 2, 3)) + uuid.uuid4().bytes
    with ComfyLow(base, None) as low, pytest.raises(HashMismatch):
        import io

        low.post_assets(io.BytesIO(data), "image/png", "x.png", expected_hash=f"blake3:{'1' * 64}")
    assert httpx.head(f"{base}/api/v2/assets/by-hash/blake3:{blake3(data).hexdigest()}").status_code == 404


def test_an_idempotency_key_is_refused_when_reused_and_names_its_job(sdk, v2):
    from comfy_sdk.exceptions import IdempotencyKeyReuse

    _, _, _, base = v2
    key = str(uuid.uuid4())
    body = {"workflow": scale_prompt("v2-seed.png", factor=0.3, prefix="idem")}
    first = httpx.post(f"{base}/api/v2/jobs", json=body, headers={"Idempotency-Key": key}, timeout=30)
    assert first.status_code == 201, first.text
    # The protocol: a reused key is refused, not replayed (no second job); the refusal names the first.
    again = error(httpx.post(f"{base}/api/v2/jobs", json=body, headers={"Idempotency-Key": key}, timeout=30),
                  422, "idempotency_key_reuse")
    assert again["details"]["job_id"] == first.json()["id"]
    with pytest.raises(IdempotencyKeyReuse):
        sdk.submit(sdk.workflows.from_json(scale_prompt("v2-seed.png", factor=0.4)), idempotency_key=key)
    sdk.jobs.get(first.json()["id"]).result()
    listed = httpx.get(f"{base}/api/v2/jobs", params={"limit": 100}).json()["jobs"]
    assert first.json()["id"] in [j["id"] for j in listed]


def test_artists_run_and_cancel_jobs_but_a_foreign_page_cannot(v2):
    _, _, _, base = v2
    r = httpx.post(f"{base}/api/v2/jobs", json={"workflow": scale_prompt("v2-seed.png")},
                   headers={"Origin": "http://evil.example"})
    error(r, 403, "forbidden")
    from comfyui_sagemaker.server_routes import policy

    for route in ("/v2/{environment}/api/v2/jobs", "/v2/{environment}/api/v2/jobs/{id}/cancel",
                  "/v2/{environment}/api/v2/assets", "/v2/{environment}/api/v2/assets/from-hash"):
        policy.check("artist", "POST", route)  # allowed: raises otherwise
