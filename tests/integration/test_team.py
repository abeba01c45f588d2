"""Team mode end to end: a designer and an artist, each in their own ComfyUI, on one S3 store (moto), one
SageMaker endpoint (moto's control plane, the runtime through the wire-protocol emulator, a real worker): each
opens the other's run and its pixels, and the designer's cancel of the artist's run reaches the worker through
the store. Roles, owners, who cancels whose run, restarts, one deploy at a time, live changes and runs that
follow what was loaded are tests/unit/test_team_services.py's: three ComfyUIs without a ComfyUI process on one
store (folder and S3) and FakeEndpoints, held to the real endpoint by tests/unit/test_endpoints_contract.py."""

from __future__ import annotations

import pytest
from comfyui_sagemaker.aws import naming
from harness.comfyui import ComfyUI
from harness.envs import unique, wait_endpoint, wait_execution, wait_task
from harness.fixtures import install_test_models, install_test_pack
from harness.images import pixels
from harness.runtime_emulator import RuntimeEmulator
from harness.worker import WorkerProcess

pytestmark = pytest.mark.comfyui

BUCKET, PREFIX = "team-bucket", "studio"
STORE_URI = f"s3://{BUCKET}/{PREFIX}"
ROLE = "arn:aws:iam::123456789012:role/ComfySageMaker"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/comfyui-sagemaker-worker:test"


def plain(color: int = 0x102030) -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 2, "batch_size": 1, "color": color}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "team"}}}


def held(signal: str) -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": 1}},
            "2": {"class_type": "SMTestWait", "inputs": {"image": ["1", 0], "signal": signal, "timeout": 60}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "held"}}}


class Team:
    def __init__(self, moto, emulator, base, env):
        self.moto, self.emulator, self.base, self.env = moto, emulator, base, env
        self.servers: dict[str, ComfyUI] = {}

    def start(self, who: str, role: str) -> ComfyUI:
        base = self.base / who
        install_test_pack(base)
        install_test_models(base)
        server = ComfyUI(base, env={**self.env, "COMFYUI_SAGEMAKER_ROLE": role,
                                    "COMFYUI_SAGEMAKER_DISPLAY_NAME": who}).start()
        self.servers[who] = server
        return server


@pytest.fixture(scope="module")
def team(moto_server, tmp_path_factory):
    s3, sm = moto_server.client("s3"), moto_server.client("sagemaker")
    s3.create_bucket(Bucket=BUCKET)
    emulator = RuntimeEmulator(sm, s3).start()
    env = {**moto_server.env(), "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": emulator.url,
           "COMFYUI_SAGEMAKER_STORE": "s3", "COMFYUI_SAGEMAKER_S3_BUCKET": BUCKET,
           "COMFYUI_SAGEMAKER_S3_PREFIX": PREFIX, "COMFYUI_SAGEMAKER_REGION": "us-east-1",
           "COMFYUI_SAGEMAKER_SAGEMAKER_ROLE_ARN": ROLE, "COMFYUI_SAGEMAKER_WORKER_IMAGE_URI": IMAGE}
    t = Team(moto_server, emulator, tmp_path_factory.mktemp("team"), env)
    worker = None
    try:
        designer = t.start("designer", "designer")
        t.start("ana", "artist")
        client = designer.client()
        t.template = unique("T")
        signal = str(t.base / "never")
        assert client.post("/sagemaker/templates", json={"name": t.template, "workflow": plain(),
                                                         "prompt": plain()}).status_code == 201
        t.held = unique("T")
        assert client.post("/sagemaker/templates", json={"name": t.held, "workflow": held(signal),
                                                         "prompt": held(signal)}).status_code == 201
        t.environment = unique("E")
        r = client.post("/sagemaker/environments", json={
            "name": t.environment, "templates": [t.template, t.held], "endpoint": {
                "kind": "sagemaker", "instance_type": "ml.g4dn.xlarge", "initial_count": 1, "mode": "realtime"}})
        assert r.status_code == 202, r.text
        assert wait_task(client, r.json()["task"]["id"])["state"] == "succeeded"
        for name in (t.template, t.held):
            assert client.put(f"/sagemaker/templates/{name}", json={"environment": t.environment}).status_code == 200
        assert wait_endpoint(client, t.environment, timeout=60)["state"] == "InService"
        manifest = f"{STORE_URI}/environments/{t.environment.lower()}/versions/v000001.json"
        worker = WorkerProcess(manifest, t.base / "worker", {**moto_server.env(), "WORKER_CANCEL_POLL": "0.2"})
        worker.start()
        assert worker.wait_state()["state"] == "ready", worker.log()[-3000:]
        emulator.workers[naming.endpoint_name(t.environment, STORE_URI)] = worker.url
        t.signal = signal
        yield t
    finally:
        if worker is not None:
            worker.stop()
        for server in t.servers.values():
            server.stop()
        emulator.stop()


def run(server: ComfyUI, body: dict) -> str:
    r = server.client().post("/sagemaker/executions", json=body)
    assert r.status_code == 202, r.text
    return r.json()["execution_id"]


def test_an_artists_run_and_the_designers_each_open_in_the_others_comfyui(team):
    ana, designer = team.servers["ana"], team.servers["designer"]
    mine = run(ana, {"prompt": plain(0x204060), "template": team.template})
    theirs = run(designer, {"prompt": plain(0x405060), "template": team.template})
    for server, execution_id in ((ana, mine), (designer, theirs)):
        assert wait_execution(server.client(), execution_id, 90)["state"] == "succeeded"
    listed = ana.client().get("/sagemaker/executions").json()["executions"]
    assert mine in [e["id"] for e in listed] and theirs not in [e["id"] for e in listed]
    everyone = ana.client().get("/sagemaker/executions?owner=all&limit=50").json()["executions"]
    assert {mine, theirs} <= {e["id"] for e in everyone}
    # The designer's run opened in Ana's ComfyUI: its outputs are copied from the store, and /view serves them.
    record = ana.client().get(f"/sagemaker/executions/{theirs}").json()
    assert record["mine"] is False and record["owner"]["name"] == "designer"
    image = record["outputs"]["3"]["images"][0]
    data = ana.client().view(image["filename"], image["subfolder"], "output")
    assert all(abs(a - b) <= 1 for px in pixels(data) for a, b in zip(px, (0xBF, 0xAF, 0x9F), strict=True))
    assert record["template_version"] == 2 and record["environment_version"] == 1  # bound: v2 of the template
    # ... and Ana's in the designer's.
    record = designer.client().get(f"/sagemaker/executions/{mine}").json()
    assert record["mine"] is False and record["owner"]["name"] == "ana"
    image = record["outputs"]["3"]["images"][0]
    data = designer.client().view(image["filename"], image["subfolder"], "output")
    assert all(abs(a - b) <= 1 for px in pixels(data) for a, b in zip(px, (0xDF, 0xBF, 0x9F), strict=True))


def test_the_designers_cancel_of_an_artists_run_reaches_the_worker(team):
    ana = team.servers["ana"]
    execution_id = run(ana, {"prompt": held(team.signal), "template": team.held})
    wait_execution(ana.client(), execution_id, 60, states=("running",))
    r = team.servers["designer"].client().post(f"/sagemaker/executions/{execution_id}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
    # Ana's ComfyUI sees it, stops relaying it, and the worker stopped the prompt (the cancel marker).
    record = wait_execution(ana.client(), execution_id, 60)
    assert record["state"] == "cancelled" and "designer" in record["error"]["message"]
    r = team.servers["designer"].client().post(f"/sagemaker/executions/{execution_id}/cancel")
    assert r.status_code == 409  # not silent: it is over
    # The endpoint is free again (the held prompt did not keep it).
    after = run(ana, {"prompt": plain(0x010203), "template": team.template})
    assert wait_execution(ana.client(), after, 90)["state"] == "succeeded"
