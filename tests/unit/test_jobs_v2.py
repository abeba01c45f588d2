"""The Comfy API v2 jobs (core/v2/jobs_v2.py) through their routes in-process (harness.fake_comfy) on FakeEndpoints,
driven by Comfy's own SDK (comfy-sdk) where a client would be: graphs with asset inputs, templates by their
parameters, events (SSE) left and joined again, cancels, idempotency keys, webhooks, who may do what, and the
protocol's refusals. tests/integration/test_v2_extension.py keeps the SDK's run on a real local endpoint with
its pixels checked."""

from __future__ import annotations

import hashlib
import io
import time
import uuid

import httpx
import pytest
from blake3 import blake3
from comfyui_sagemaker.core.store import blob_key
from harness.fake_comfy import FakeComfy, publish
from harness.gateway import WebhookReceiver
from harness.images import png
from harness.prompts import scale_prompt
from harness.v2_rig import V2Rig, error, held, sdk_on
from harness.waiting import wait_for

ENV = "V2Env"


def param_template() -> dict:
    """A template with parameters: an image and a factor, scaled by the test pack's node."""
    return {
        "1": {"class_type": "SageMakerParamImage", "inputs": {"name": "photo", "image": "v2-seed.png",
                                                              "description": "", "required": True}},
        "2": {"class_type": "SageMakerParamFloat", "inputs": {"name": "factor", "default": 0.5, "min": 0.0,
                                                              "max": 1.0, "step": 0.01, "description": "",
                                                              "required": False}},
        "3": {"class_type": "SMTestScale", "inputs": {"image": ["1", 0], "lora_name": "style.safetensors",
                                                      "factor": ["2", 0]}},
        "4": {"class_type": "SageMakerTemplateOutput", "inputs": {"images": ["3", 0], "name": "result",
                                                                  "description": ""}},
    }


class V2(V2Rig):
    def __init__(self, tmp_path):
        super().__init__(tmp_path, ENV, config={"webhook_allowed_hosts": ["127.0.0.1"]}, templates=("Params",),
                         bind=lambda comfy: comfy.template("Params", param_template(), ENV))

    def artist(self, tmp_path) -> FakeComfy:
        """An artist's ComfyUI on the same store and endpoint, with the same input image in its own folder."""
        artist = FakeComfy(tmp_path / "artist", self.store, self.fake, role="artist", name="artist")
        (artist.base / "input" / "v2-seed.png").write_bytes((self.comfy.base / "input" / "v2-seed.png").read_bytes())
        return artist


@pytest.fixture
def v2(tmp_path):
    v = V2(tmp_path)
    yield v
    v.close()


@pytest.fixture
def sdk(v2, monkeypatch):
    yield from sdk_on(v2.base, monkeypatch)


def test_the_sdk_runs_a_graph_on_an_uploaded_asset_and_reads_its_outputs(sdk, v2):
    from comfy_sdk import OutputReady, Progress, StatusChange

    image = png(6, 4, (120, 60, 240))
    asset = sdk.assets.from_bytes(image, filename="photo.png", content_type="image/png")
    # Held until its event stream is open: the stream then sees the run's progress, however busy the machine.
    workflow = sdk.workflows.from_json(scale_prompt("placeholder.png", factor=0.5, prefix="v2unit",
                                                    wait_for="/nonexistent/never", timeout=600))
    workflow.set_input("1", "image", asset)
    job = sdk.submit(workflow)
    assert job.status in ("queued", "running") and asset.hash == "blake3:" + blake3(image).hexdigest()
    stream = job.events()
    events = [next(stream)]
    v2.fake.run(job.id).wait_started().release()
    events += list(stream)
    assert isinstance(events[0], StatusChange) and events[-1] == StatusChange(status="succeeded")
    assert any(isinstance(e, Progress) for e in events)
    assert [e.output.node_id for e in events if isinstance(e, OutputReady)] == ["3"]
    job.result()
    (output,) = job.get_outputs("3")
    data = output.to_bytes()
    item = v2.fake.run(job.id).outputs["3"]["images"][0]  # what the endpoint stored
    assert hashlib.sha256(data).hexdigest() == item["sha256"] and output.size_bytes == len(data)
    assert output.type == "image" and output.content_type == "image/png"
    assert output.to_bytes(range=(0, 9)) == data[:10]  # a Range request
    # The asset reached the endpoint as an input file by its content.
    (name, digest), = v2.fake.invocations[-1]["inputs"].items()
    assert digest == hashlib.sha256(image).hexdigest() and v2.fake.invocations[-1]["prompt"]["1"]["inputs"][
        "image"] == name
    record = v2.comfy.get(f"/sagemaker/executions/{job.id}").json()
    assert record["environment"] == ENV and record["state"] == "succeeded" and record["api"] == "v2"
    again = sdk.assets.from_bytes(image, filename="again.png")
    again.commit()
    assert again.id != asset.id and again.created_new is False  # minted through from-hash, no bytes sent


def test_a_template_runs_by_its_parameters_with_an_asset_for_its_image(sdk, v2):
    image = png(3, 3, (100, 200, 40))
    asset = sdk.assets.from_bytes(image, filename="p.png")
    asset.commit()
    r = httpx.post(v2.jobs, json={"template": "Params", "inputs": {"photo": asset.as_reference(), "factor": 0.25}},
                   timeout=120)
    assert r.status_code == 201, r.text
    job = sdk.jobs.get(r.json()["id"]).result()
    (output,) = job.get_outputs("4")
    assert output.to_bytes()
    sent = v2.fake.invocations[-1]
    assert sent["prompt"]["3"]["inputs"]["factor"] == 0.25  # the value, filled in and lowered
    photo = sent["prompt"]["3"]["inputs"]["image"][0]
    assert sent["prompt"][photo]["inputs"]["image"] in sent["inputs"]
    assert hashlib.sha256(image).hexdigest() in sent["inputs"].values()
    bad = httpx.post(v2.jobs, json={"template": "Params", "inputs": {"factor": 7}}, timeout=120)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_inputs", bad.text
    assert set(bad.json()["error"]["details"]["fields"]) == {"factor", "photo"}


def test_a_job_is_cancelled_and_the_endpoint_goes_on(sdk, v2):
    job = sdk.submit(sdk.workflows.from_json(held()))
    v2.fake.run(job.id).wait_started()
    deadline = time.monotonic() + 120
    while job.refresh().status != "running":
        assert time.monotonic() < deadline, job.status
        time.sleep(0.02)
    assert job.cancel().status == "canceled"
    assert job.wait(timeout=120).status == "canceled" and job.cancel().status == "canceled"  # idempotent
    assert v2.fake.cancels == [{"endpoint": ENV, "execution_id": job.id, "outcome": "running"}]
    after = sdk.run(sdk.workflows.from_json(scale_prompt("v2-seed.png", factor=0.1, prefix="after")), timeout=120)
    assert after.status == "succeeded"


def test_an_event_stream_left_and_joined_again_ends_with_the_job(sdk, v2):
    job = sdk.submit(sdk.workflows.from_json(held("sse")))
    run = v2.fake.run(job.id).wait_started()
    url = f"{v2.jobs}/{job.id}/events"
    with httpx.stream("GET", url, timeout=120) as first:  # the client leaves after the first event
        assert next(first.iter_lines()) == "event: status"
    with httpx.stream("GET", url, timeout=120) as second:
        lines = second.iter_lines()
        assert next(lines) == "event: status"
        run.release()
        seen = [line for line in lines if line.startswith("event: ")]
    assert seen[-1] == "event: status" and "event: output" in seen
    assert sdk.jobs.get(job.id).status == "succeeded"


def test_the_protocols_refusals(v2):
    from comfy_low import ComfyLow
    from comfy_low.errors import HashMismatch

    jobs, base = v2.jobs, v2.base
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
    error(httpx.post(jobs, json={"workflow": scale_prompt("v2-seed.png"), "nope": 1}), 422, "bad_request")
    error(httpx.post(jobs, json={"workflow": scale_prompt("v2-seed.png"), "metadata": {"k": 5}}), 422, "bad_request")
    error(httpx.get(f"{jobs}/20250101T000000000000-00000000"), 404, "not_found")
    error(httpx.get(f"{base}/api/v2/assets/{uuid.uuid4()}"), 404, "not_found")
    assert httpx.head(f"{base}/api/v2/assets/by-hash/blake3:{'0' * 64}").status_code == 404
    error(httpx.post(f"{base}/api/v2/assets/from-hash", json={"hash": f"blake3:{'0' * 64}"}), 404, "blob_not_found")
    error(httpx.post(jobs, content=b"{not json", headers={"Content-Type": "application/json"}), 422, "bad_request")
    assert v2.fake.invocations == []  # nothing refused reached the endpoint
    # An asset whose bytes are not the expected hash: refused, nothing kept under their real hash.
    data = png(5, 5, (1, 2, 3)) + uuid.uuid4().bytes
    with ComfyLow(base, None) as low, pytest.raises(HashMismatch):
        low.post_assets(io.BytesIO(data), "image/png", "x.png", expected_hash=f"blake3:{'1' * 64}")
    assert httpx.head(f"{base}/api/v2/assets/by-hash/blake3:{blake3(data).hexdigest()}").status_code == 404
    assert not v2.store.exists(blob_key(hashlib.sha256(data).hexdigest()))


def test_an_idempotency_key_is_refused_when_reused_and_names_its_job(sdk, v2):
    from comfy_sdk.exceptions import IdempotencyKeyReuse

    key = str(uuid.uuid4())
    body = {"workflow": scale_prompt("v2-seed.png", factor=0.3, prefix="idem")}
    first = httpx.post(v2.jobs, json=body, headers={"Idempotency-Key": key}, timeout=120)
    assert first.status_code == 201, first.text
    # The protocol: a reused key is refused, not replayed (no second job); the refusal names the first.
    again = error(httpx.post(v2.jobs, json=body, headers={"Idempotency-Key": key}, timeout=120), 422,
                  "idempotency_key_reuse")
    assert again["details"]["job_id"] == first.json()["id"]
    with pytest.raises(IdempotencyKeyReuse):
        sdk.submit(sdk.workflows.from_json(scale_prompt("v2-seed.png", factor=0.4)), idempotency_key=key)
    sdk.jobs.get(first.json()["id"]).result()
    listed = httpx.get(v2.jobs, params={"limit": 100}).json()["jobs"]
    assert [j["id"] for j in listed] == [first.json()["id"]]  # one job for the key
    assert len(v2.fake.invocations) == 1


def test_jobs_are_listed_per_owner_and_environment(tmp_path, v2):
    v2.fake.deploy(publish(v2.store, "OtherEnv"))
    v2.fake.wait_state("OtherEnv")
    mine = httpx.post(v2.jobs, json={"workflow": scale_prompt("v2-seed.png")}).json()["id"]
    other_env = httpx.post(f"{v2.comfy.url}/sagemaker/v2/OtherEnv/api/v2/jobs",
                           json={"workflow": scale_prompt("v2-seed.png")}).json()["id"]
    artist = v2.artist(tmp_path)
    try:
        theirs = artist.post(f"/sagemaker/v2/{ENV}/api/v2/jobs", json={"workflow": scale_prompt("v2-seed.png")})
        assert theirs.status_code == 201, theirs.text  # an artist runs jobs
        for job_id, comfy in ((mine, v2.comfy), (other_env, v2.comfy), (theirs.json()["id"], artist)):
            comfy.wait(job_id)
        assert [j["id"] for j in httpx.get(v2.jobs).json()["jobs"]] == [mine]
        error(httpx.get(f"{v2.jobs}/{other_env}"), 404, "not_found")  # a job of another environment
        job = httpx.get(f"{v2.jobs}/{mine}").json()
        assert job["id"] == mine and job["status"] == "succeeded"
    finally:
        artist.close()


def test_a_jobs_webhook_carries_the_job(v2):
    with WebhookReceiver() as receiver:
        r = httpx.post(v2.jobs, json={"workflow": scale_prompt("v2-seed.png"), "webhook_url": receiver.url,
                                      "metadata": {"order": "42"}})
        assert r.status_code == 201, r.text
        receiver.wait(1, 120)
        wait_for(lambda: not v2.comfy.services.webhooks.busy(), 120, "the delivery to be recorded")
    (body,) = receiver.bodies()
    assert body["type"] == "job.ended" and body["job"]["id"] == r.json()["id"]
    assert body["job"]["status"] == "succeeded" and body["job"]["metadata"] == {"order": "42"}


def test_artists_run_and_cancel_their_jobs_but_a_foreign_page_cannot(v2, tmp_path):
    r = httpx.post(v2.jobs, json={"workflow": scale_prompt("v2-seed.png")}, headers={"Origin": "http://evil.example"})
    error(r, 403, "forbidden")
    assert v2.fake.invocations == []
    from comfyui_sagemaker.server_routes import policy

    for route in ("/v2/{environment}/api/v2/jobs", "/v2/{environment}/api/v2/jobs/{id}/cancel",
                  "/v2/{environment}/api/v2/assets", "/v2/{environment}/api/v2/assets/from-hash"):
        policy.check("artist", "POST", route)  # allowed: raises otherwise
    artist = v2.artist(tmp_path)
    try:
        job = artist.post(f"/sagemaker/v2/{ENV}/api/v2/jobs", json={"workflow": held()}).json()
        v2.fake.run(job["id"]).wait_started()
        cancelled = artist.post(f"/sagemaker/v2/{ENV}/api/v2/jobs/{job['id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "canceled"
    finally:
        artist.close()
