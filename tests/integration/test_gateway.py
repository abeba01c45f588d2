"""The gateway as users run it (`python <extension folder> gateway`), on a ComfyUI's folder store and its
local endpoint: the token on every route, Comfy's SDK through it, the template API without ComfyUI's input
folder, and a graceful stop that lets a request in flight finish."""

from __future__ import annotations

import base64
import hashlib
import threading
import time

import httpx
import pytest
import requests
from harness.gateway import Gateway
from harness.images import pixels, png
from harness.prompts import scale_prompt

pytestmark = pytest.mark.comfyui


@pytest.fixture(scope="module")
def gateway(comfyui, v2, tmp_path_factory):
    """A gateway reading the session ComfyUI's configuration folder: its folder store, its local endpoints."""
    gw = Gateway(tmp_path_factory.mktemp("gateway"), config_dir=comfyui.user_dir / "__sagemaker").start()
    try:
        yield gw
    finally:
        gw.stop()


def close_to(data: bytes, color, tolerance=1) -> bool:
    return all(abs(a - b) <= tolerance for px in pixels(data) for a, b in zip(px, color, strict=True))


def test_every_route_needs_the_token_even_on_loopback(gateway, v2):
    _, env, params, _ = v2
    assert requests.get(gateway.url + "/health", timeout=30).json()["ok"] is True
    public = requests.get(gateway.url + "/sagemaker/health", timeout=30).json()
    assert public["token_required"] is True and public["authorized"] is False and "store" not in public
    for path in ("/sagemaker/templates", f"/sagemaker/templates/{params}", "/sagemaker/executions"):
        r = requests.get(gateway.url + path, timeout=30)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (path, r.text)
        assert gateway.get(path).status_code == 200, path
    r = requests.get(f"{gateway.url}/sagemaker/v2/{env}/api/v2/jobs", timeout=30)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    wrong = requests.get(f"{gateway.url}/sagemaker/templates", headers={"Authorization": "Bearer nope"}, timeout=30)
    assert wrong.status_code == 403
    # Only the run APIs: no publishing, no configuration, no ComfyUI routes.
    for method, path in (("POST", "/sagemaker/environments"), ("PUT", "/sagemaker/config"),
                         ("POST", "/sagemaker/templates"), ("GET", "/prompt")):
        r = requests.request(method, gateway.url + path, headers=gateway.headers(), json={}, timeout=30)
        assert r.status_code in (404, 405) and r.json()["error"]["code"] in ("not_found", "method_not_allowed")
    doc = gateway.get("/sagemaker/openapi.json").json()
    assert "/sagemaker/v2/{environment}/api/v2/jobs" in doc["paths"]
    assert "/sagemaker/environments" not in doc["paths"]
    assert 'GET /sagemaker/templates HTTP/1.1" 200' in gateway.log()  # the access log
    assert gateway.token not in gateway.log()


def test_the_sdk_runs_a_graph_through_the_gateway(gateway, v2, monkeypatch):
    from comfy_sdk import Comfy

    _, env, _, _ = v2
    monkeypatch.setenv("COMFY_BASE_URL", f"{gateway.url}/sagemaker/v2/{env}")
    with Comfy(api_key=gateway.token, timeout=120) as sdk:
        asset = sdk.assets.from_bytes(png(4, 2, (90, 180, 30)), filename="g.png")
        workflow = sdk.workflows.from_json(scale_prompt("unused.png", factor=0.5, prefix="gw"))
        workflow.set_input("1", "image", asset)
        job = sdk.run(workflow, timeout=300)
        (output,) = job.get_outputs("3")
        assert close_to(output.to_bytes(), (45, 90, 15))
    # No ComfyUI here: the output was checked against its digest and is served from the store.
    record = gateway.get(f"/sagemaker/executions/{job.id}").json()
    assert record["outputs"]["3"]["images"][0]["size"] == output.size_bytes


def test_the_template_api_runs_without_an_input_folder(gateway, v2, comfyui):
    _, _, params, _ = v2
    raw = png(2, 2, (40, 80, 120))
    image = base64.b64encode(raw).decode()
    r = gateway.post(f"/sagemaker/templates/{params}/executions",
                     json={"inputs": {"photo": image, "factor": 0.5}, "wait": 120}, timeout=150)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["execution"]["state"] == "succeeded"
    digest = body["outputs"]["result"][0]["sha256"]
    data = requests.get(f"{gateway.url}/sagemaker/v2/{body['execution']['environment']}/api/v2/assets/"
                        f"out-{body['execution_id']}-{digest[:24]}/content", headers=gateway.headers(), timeout=30)
    assert close_to(data.content, (20, 40, 60))
    # The image went to the store as a blob, not into a ComfyUI's input folder.
    name = f"sagemaker-{hashlib.sha256(raw).hexdigest()[:16]}.png"
    assert not (comfyui.input_dir / name).exists()
    assert (comfyui.user_dir / "__sagemaker" / "store" / "blobs" / "sha256" / hashlib.sha256(raw).hexdigest()).exists()
    refused = gateway.post(f"/sagemaker/templates/{params}/executions",
                           json={"inputs": {"photo": "v2-seed.png"}})  # a file name: there is no input folder
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_inputs"


def test_a_stop_lets_the_request_in_flight_finish_and_refuses_new_ones(comfyui, v2, tmp_path):
    _, env, params, _ = v2
    gw = Gateway(tmp_path, config_dir=comfyui.user_dir / "__sagemaker", drain_seconds=300).start()
    release = tmp_path / "release"
    held = scale_prompt("unused.png", prefix="drain", wait_for=str(release), timeout=600)
    answer: dict = {}
    try:
        asset = gw.post(f"/sagemaker/v2/{env}/api/v2/assets", files={"file": ("d.png", png(2, 2, (9, 9, 9)))},
                        data={"file_path": "d.png"}).json()
        held["1"]["inputs"]["image"] = {"__type": "core/ASSET", "info": {"id": asset["id"]}}
        job = gw.post(f"/sagemaker/v2/{env}/api/v2/jobs", json={"workflow": held}).json()

        opened = threading.Event()

        def wait_in_flight():  # a request in flight when the stop comes: the job's event stream
            with httpx.stream("GET", f"{gw.url}/sagemaker/v2/{env}/api/v2/jobs/{job['id']}/events",
                              headers=gw.headers(), timeout=300) as stream:
                answer["status"] = stream.status_code
                lines = []
                for line in stream.iter_lines():
                    lines.append(line)
                    opened.set()
                answer["lines"] = lines

        events = threading.Thread(target=wait_in_flight)
        events.start()
        assert opened.wait(120)
        deadline = time.monotonic() + 120
        while gw.get(f"/sagemaker/v2/{env}/api/v2/jobs/{job['id']}").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        gw.terminate()
        deadline = time.monotonic() + 120
        while True:  # it stops listening at once: while the run it follows is still held
            try:
                requests.get(gw.url + "/health", timeout=1)
            except (requests.ConnectionError, requests.ReadTimeout):
                # A connection accepted in the instant the listener closes is held, unanswered, until the
                # drain ends (aiohttp's graceful shutdown reads no new request): not served either way.
                break
            assert time.monotonic() < deadline, "still accepting connections"
            time.sleep(0.05)
        events.join(120)
        assert not events.is_alive() and answer["status"] == 200  # its event stream ended (reconnect)
        assert '"status":"succeeded"' not in "".join(answer["lines"])
        assert gw.proc.poll() is None  # ... while the run it follows goes on
        release.write_text("go")
        assert gw.proc.wait(timeout=300) == 0
    finally:
        release.write_text("go")
        gw.stop()
    record = comfyui.client().get(f"/sagemaker/executions/{job['id']}").json()
    assert record["state"] == "succeeded", record
    assert "stopped (0 run(s) failed" in gw.log()
