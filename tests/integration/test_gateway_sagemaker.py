"""The SageMaker path of the run APIs: an S3 store and SageMaker on moto, the runtime through the
wire-protocol emulator, the prompt on a real worker. Comfy's SDK drives the extension's v2 surface and two
gateway processes on that one store: a job started through one is read, followed, downloaded and cancelled
through the other; its webhook reaches a receiver on 127.0.0.1, signed, retried after a 500."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
import standardwebhooks
from harness.comfyui import ROOT
from harness.envs import unique
from harness.gateway import Gateway, WebhookReceiver
from harness.images import pixels, png
from harness.prompts import scale_prompt
from harness.waiting import wait_for

pytestmark = pytest.mark.comfyui


def close_to(data: bytes, color, tolerance=1) -> bool:
    return all(abs(a - b) <= tolerance for px in pixels(data) for a, b in zip(px, color, strict=True))


@pytest.fixture(scope="module")
def rig(aws_rig, tmp_path_factory):
    """The session's AWS rig (tests/harness/aws_rig.py): its designer's ComfyUI publishes an async SageMaker
    environment; two gateways serve it. Yields (ComfyUI, environment, gateway A, gateway B, the processes'
    environment)."""
    aws_rig.take()
    client = aws_rig.client()
    client.upload_image("gw.png", png(4, 4, (200, 100, 50)))
    template = unique("T")
    graph = scale_prompt("gw.png", prefix="gw")
    assert client.post("/sagemaker/templates", json={"name": template, "workflow": graph,
                                                     "prompt": graph}).status_code == 201
    name = aws_rig.publish([template], "async", bind=True)
    logs = tmp_path_factory.mktemp("gw-sm")
    gateways: list[Gateway] = []
    try:
        gateways += [Gateway(logs, env=aws_rig.env).start() for _ in range(2)]
        yield aws_rig.comfyui, name, gateways[0], gateways[1], aws_rig.env
    finally:
        for gateway in gateways:
            gateway.stop()


def graph(gateway: Gateway, env: str, **kw) -> dict:
    """The test graph on an image uploaded as an asset (a gateway has no input folder to name a file of)."""
    r = gateway.post(f"/sagemaker/v2/{env}/api/v2/assets", files={"file": ("in.png", png(4, 4, (200, 100, 50)))},
                     data={"file_path": "in.png", "content_type": "image/png"})
    assert r.status_code in (200, 201), r.text
    prompt = scale_prompt("unused.png", **kw)
    prompt["1"]["inputs"]["image"] = {"__type": "core/ASSET", "info": {"id": r.json()["id"]}}
    return prompt


def sdk_for(base_url: str, token: str | None, monkeypatch):
    from comfy_sdk import Comfy

    monkeypatch.setenv("COMFY_BASE_URL", base_url)
    return Comfy(api_key=token, timeout=120)


def test_the_sdk_runs_on_sagemaker_through_the_extension(rig, monkeypatch):
    server, env, _, _, _ = rig
    with sdk_for(f"{server.url}/sagemaker/v2/{env}", None, monkeypatch) as sdk:
        asset = sdk.assets.from_bytes(png(4, 2, (10, 200, 60)), filename="x.png")
        workflow = sdk.workflows.from_json(scale_prompt("unused.png", factor=0.5, prefix="ext"))
        workflow.set_input("1", "image", asset)
        job = sdk.run(workflow, timeout=300)
        (output,) = job.get_outputs("3")
        assert close_to(output.to_bytes(), (5, 100, 30))


def test_a_job_started_on_one_gateway_is_followed_and_downloaded_on_another(rig, monkeypatch):
    from comfy_sdk import OutputReady, StatusChange

    _, env, a, b, _ = rig
    with sdk_for(f"{a.url}/sagemaker/v2/{env}", a.token, monkeypatch) as sdk_a:
        asset = sdk_a.assets.from_bytes(png(6, 4, (120, 60, 240)), filename="photo.png")
        workflow = sdk_a.workflows.from_json(scale_prompt("unused.png", factor=0.5, prefix="ab"))
        workflow.set_input("1", "image", asset)
        job = sdk_a.submit(workflow)
    with sdk_for(f"{b.url}/sagemaker/v2/{env}", b.token, monkeypatch) as sdk_b:
        followed = sdk_b.jobs.get(job.id)
        events = list(followed.events())  # B does not run it: it follows the record in the store
        assert events[-1] == StatusChange(status="succeeded")
        assert [e.output.node_id for e in events if isinstance(e, OutputReady)] == ["3"]
        (output,) = followed.result().get_outputs("3")
        assert close_to(output.to_bytes(), (60, 30, 120))
        assert sdk_b.assets.get(asset.id).hash == asset.hash  # B serves A's upload
    # A file name where an input goes: there is no input folder here; refused before anything runs.
    r = b.post(f"/sagemaker/v2/{env}/api/v2/jobs", json={"workflow": scale_prompt("gw.png")})
    assert r.status_code == 422 and r.json()["error"]["code"] == "input_missing", r.text
    assert "gw.png" in r.json()["error"]["message"]


def test_a_webhook_is_signed_and_retried_after_a_500(rig):
    _, env, a, b, process_env = rig
    with WebhookReceiver(answers=[500]) as receiver:
        r = a.post(f"/sagemaker/v2/{env}/api/v2/jobs", json={
            "workflow": graph(a, env, factor=0.25, prefix="hook"), "webhook_url": receiver.url,
            "metadata": {"order": "42"}})
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        receiver.wait(2)
    secret = subprocess.run([sys.executable, str(ROOT), "webhook-secret"], env=process_env, capture_output=True,
                            text=True, check=True, timeout=120).stdout.strip()
    assert secret == process_env["COMFYUI_SAGEMAKER_WEBHOOK_SECRET"]
    for headers, body, _ in receiver.received:
        standardwebhooks.Webhook(secret).verify(body, headers)  # what a receiver runs; raises if it fails
    assert len({headers["webhook-id"] for headers, _, _ in receiver.received}) == 1  # one event, one id
    sent = receiver.bodies()[-1]
    assert sent["type"] == "job.ended" and sent["job"]["id"] == job_id and sent["job"]["status"] == "succeeded"
    assert sent["job"]["metadata"] == {"order": "42"}
    hook = wait_for(lambda: (h := b.get(f"/sagemaker/v2/{env}/api/v2/jobs/{job_id}").json()["webhook"])["state"]
                    == "delivered" and h, what="the webhook delivered")
    assert hook["attempts"] == 2 and hook["last_status"] == 200


def test_a_job_started_on_one_gateway_is_cancelled_on_another(rig, aws_rig, tmp_path, monkeypatch):
    _, env, a, b, _ = rig
    held = graph(a, env, prefix="held", wait_for=str(tmp_path / "never"), timeout=600)
    job = a.post(f"/sagemaker/v2/{env}/api/v2/jobs", json={"workflow": held}).json()
    wait_for(lambda: b.get(f"/sagemaker/v2/{env}/api/v2/jobs/{job['id']}").json()["status"] == "running",
             what="the job running")
    # Cancelled once the worker holds it (the hold lasts until the test ends, so only the cancel can end it).
    wait_for(lambda: [c["execution"] for c in aws_rig.worker.status()["comfyuis"]] == [job["id"]],
             what="the held job running on the worker")
    with sdk_for(f"{b.url}/sagemaker/v2/{env}", b.token, monkeypatch) as sdk_b:
        assert sdk_b.jobs.get(job["id"]).cancel().status == "canceled"
    with httpx.stream("GET", f"{a.url}/sagemaker/v2/{env}/api/v2/jobs/{job['id']}/events", headers=a.headers(),
                      timeout=300) as stream:
        lines = [line for line in stream.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == 'data: {"status":"canceled","queue_position":null}'
    # The worker stopped the held prompt: the next job runs.
    after = a.post(f"/sagemaker/v2/{env}/api/v2/jobs", json={"workflow": graph(b, env, prefix="after")})
    status = wait_for(lambda: (s := b.get(f"/sagemaker/v2/{env}/api/v2/jobs/{after.json()['id']}").json()["status"])
                      in ("succeeded", "failed") and s, timeout=300, what="the next job to end")
    assert status == "succeeded"
