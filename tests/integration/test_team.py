"""Team mode: one designer and two artists, each in their own ComfyUI, on one S3 store (moto), one
SageMaker endpoint (moto's control plane, the runtime through the wire-protocol emulator, a real
worker). Each test is one point of the issue: roles, own runs, cancel, restarts, one deploy at a time,
live changes, runs that follow what was loaded."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from comfyui_sagemaker.aws import naming
from comfyui_sagemaker.aws.s3_store import S3Store
from comfyui_sagemaker.core.execution_records import ExecutionRecords
from comfyui_sagemaker.core.executions import new_id
from comfyui_sagemaker.core.identity import Owner
from comfyui_sagemaker.core.leases import Leases
from harness.comfyui import ComfyUI
from harness.envs import unique, wait_endpoint, wait_execution, wait_job
from harness.fixtures import install_test_models, install_test_pack
from harness.images import pixels
from harness.runtime_emulator import RuntimeEmulator
from harness.waiting import wait_for
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

    def owner(self, who: str) -> Owner:
        identity = self.servers[who].client().get("/sagemaker/health").json()["identity"]
        return Owner(identity["instance"], identity["name"])

    def store(self) -> S3Store:
        return S3Store(BUCKET, PREFIX, s3_client=self.moto.client("s3"))


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
        t.start("ben", "artist")
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
        assert wait_job(client, r.json()["job"]["id"])["state"] == "succeeded"
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


def test_an_artist_can_read_and_run_but_not_publish_deploy_or_delete(team):
    ana = team.servers["ana"].client()
    assert team.template in [t["name"] for t in ana.get("/sagemaker/templates").json()["templates"]]
    before = ana.get("/sagemaker/templates").json()
    refused = [
        ana.post("/sagemaker/templates", json={"name": unique("T"), "workflow": plain(), "prompt": plain()}),
        ana.put(f"/sagemaker/templates/{team.template}", json={"environment": None}),
        ana.delete(f"/sagemaker/templates/{team.template}"),
        ana.post("/sagemaker/environments", json={"name": unique("E"), "templates": [team.template]}),
        ana.delete(f"/sagemaker/environments/{team.environment}?force=true"),
        ana.post("/sagemaker/endpoints", json={"environment": team.environment}),
        ana.delete(f"/sagemaker/endpoints/{team.environment}"),
        ana.delete("/sagemaker/models/loras/style.safetensors"),
    ]
    for r in refused:
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_for_role", r.text
        assert "only a designer" in r.json()["error"]["message"]
    assert ana.get("/sagemaker/templates").json() == before
    assert ana.get(f"/sagemaker/endpoints/{team.environment}").json()["state"] == "InService"
    assert ana.get("/sagemaker/health").json()["role"] == "artist"


def test_each_artist_sees_their_own_runs_and_opens_anothers_outputs(team):
    ana, ben = team.servers["ana"], team.servers["ben"]
    mine = run(ana, {"prompt": plain(0x204060), "template": team.template})
    theirs = run(ben, {"prompt": plain(0x405060), "template": team.template})
    for server, execution_id in ((ana, mine), (ben, theirs)):
        assert wait_execution(server.client(), execution_id, 90)["state"] == "succeeded"
    listed = ana.client().get("/sagemaker/executions").json()["executions"]
    assert mine in [e["id"] for e in listed] and theirs not in [e["id"] for e in listed]
    assert all(e["mine"] and e["owner"]["name"] == "ana" for e in listed), listed
    everyone = ana.client().get("/sagemaker/executions?owner=all&limit=50").json()["executions"]
    assert {mine, theirs} <= {e["id"] for e in everyone}
    # Ben's run opened in Ana's ComfyUI: its outputs are copied from the store, and /view serves them.
    record = ana.client().get(f"/sagemaker/executions/{theirs}").json()
    assert record["mine"] is False and record["owner"]["name"] == "ben"
    image = record["outputs"]["3"]["images"][0]
    data = ana.client().view(image["filename"], image["subfolder"], "output")
    assert all(abs(a - b) <= 1 for px in pixels(data) for a, b in zip(px, (0xBF, 0xAF, 0x9F), strict=True))
    assert record["template_version"] == 2 and record["environment_version"] == 1  # bound: v2 of the template


def test_cancel_of_someone_elses_run_is_the_designers_and_never_silent(team):
    ben = team.servers["ben"]
    execution_id = run(ben, {"prompt": held(team.signal), "template": team.held})
    wait_execution(ben.client(), execution_id, 60, states=("running",))
    r = team.servers["ana"].client().post(f"/sagemaker/executions/{execution_id}/cancel")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_for_role", r.text
    assert ben.client().get(f"/sagemaker/executions/{execution_id}").json()["state"] == "running"
    r = team.servers["designer"].client().post(f"/sagemaker/executions/{execution_id}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
    # Ben's ComfyUI sees it, stops relaying it, and the worker stopped the prompt (the cancel marker).
    record = wait_execution(ben.client(), execution_id, 60)
    assert record["state"] == "cancelled" and "designer" in record["error"]["message"]
    r = team.servers["designer"].client().post(f"/sagemaker/executions/{execution_id}/cancel")
    assert r.status_code == 409  # not silent: it is over
    # The endpoint is free again (the held prompt did not keep it).
    after = run(ben, {"prompt": plain(0x010203), "template": team.template})
    assert wait_execution(ben.client(), after, 90)["state"] == "succeeded"


def test_restarting_a_comfyui_fails_only_its_own_runs_in_flight(team):
    store = team.store()
    records = ExecutionRecords(store)
    ana, ben = team.owner("ana"), team.owner("ben")

    def in_flight(owner: Owner) -> dict:
        r = {"id": new_id(owner.instance), "prompt_id": "p", "template": team.template, "environment":
             team.environment, "endpoint": team.environment, "owner": owner.to_json(), "client_id": None,
             "state": "running", "created_at": "x", "outputs": {}, "error": None}
        records.create(r)
        return r

    left_by_ana, bens = in_flight(ana), in_flight(ben)
    legacy_id = new_id()
    store.put(f"executions/{legacy_id}.json", json.dumps({"id": legacy_id, "state": "running"}).encode())
    team.servers["ana"].stop()
    team.servers["ana"].start()
    wait_for(lambda: records.read(left_by_ana["id"])[0]["state"] == "failed", timeout=60,
             what="Ana's ComfyUI to fail its own run left in flight")
    assert "restarted" in records.read(left_by_ana["id"])[0]["error"]["message"]
    assert records.read(bens["id"])[0]["state"] == "running"  # someone else's: untouched
    assert records.read(legacy_id)[0]["state"] == "running"  # an older version's record: never rewritten
    records.swap(bens["id"], lambda r: {**r, "state": "failed"})
    records.ended({**bens, "state": "failed"})


def test_one_deploy_of_an_environment_at_a_time_across_comfyuis(team):
    store = team.store()
    elsewhere = Leases(store, Owner("ffffffffffff", "another designer"))
    lease = elsewhere.acquire(team.environment, "publishing")  # another designer's ComfyUI, mid-publish
    try:
        designer = team.servers["designer"].client()
        r = designer.post("/sagemaker/environments", json={"name": team.environment, "templates": [team.template]})
        assert r.status_code == 409 and r.json()["error"]["code"] == "deploy_in_progress", r.text
        assert "another designer" in r.json()["error"]["message"]
        r = designer.post("/sagemaker/endpoints", json={"environment": team.environment})
        assert r.status_code == 409 and r.json()["error"]["code"] == "deploy_in_progress"
        listed = {e["name"]: e for e in designer.get("/sagemaker/environments").json()["environments"]}
        assert listed[team.environment]["busy"] == {"by": "another designer", "what": "publishing"}
        assert len(designer.get(f"/sagemaker/environments/{team.environment}?version=1").json()) > 0
    finally:
        elsewhere.release(lease)
    endpoint = team.servers["ana"].client().get(f"/sagemaker/endpoints/{team.environment}").json()
    assert endpoint["version"] == 1  # the version it serves, for everyone


def test_a_killed_publishers_lease_expires_and_the_next_publish_proceeds(team):
    store = team.store()
    dead = Leases(store, Owner("eeeeeeeeeeee", "crashed designer"), ttl=1.0, renew_every=3600)
    lease = dead.acquire(team.environment, "publishing")
    lease.stop.set()  # the process died: nobody renews it
    time.sleep(1.2)
    taken = Leases(store, team.owner("designer")).acquire(team.environment, "publishing")
    Leases(store, team.owner("designer")).release(taken)


def test_a_change_in_one_comfyui_reaches_the_others_within_seconds(team):
    ben = team.servers["ben"].client()
    client_id = uuid.uuid4().hex
    ws = ben.websocket(client_id)
    try:
        name = unique("T")
        t0 = time.monotonic()
        assert team.servers["designer"].client().post(
            "/sagemaker/templates", json={"name": name, "workflow": plain(), "prompt": plain()}).status_code == 201
        while True:
            assert time.monotonic() - t0 < 10, "no sagemaker.changed reached Ben's ComfyUI"
            msg = ws.recv()
            if isinstance(msg, str) and json.loads(msg)["type"] == "sagemaker.changed" \
                    and json.loads(msg)["data"]["collection"] == "templates":
                break
        assert name in [t["name"] for t in ben.get("/sagemaker/templates").json()["templates"]]
    finally:
        ws.close()


def test_a_run_follows_the_environment_the_artist_loaded(team):
    designer, ana = team.servers["designer"].client(), team.servers["ana"].client()
    other = unique("E")
    r = designer.post("/sagemaker/environments", json={"name": other, "templates": [team.template]})
    assert r.status_code == 202 and wait_job(designer, r.json()["job"]["id"])["state"] == "succeeded"
    loaded = ana.get(f"/sagemaker/templates/{team.template}").json()  # what Ana loaded: bound to the endpoint's
    assert designer.put(f"/sagemaker/templates/{team.template}", json={"environment": other}).status_code == 200
    try:
        execution_id = run(team.servers["ana"], {"prompt": plain(0x0A0B0C), "template": team.template,
                                                 "template_version": loaded["version"],
                                                 "environment": loaded["environment"]})
        record = wait_execution(ana, execution_id, 90)
        assert record["state"] == "succeeded" and record["environment"] == team.environment
        assert record["template_version"] == loaded["version"] and record["environment_version"] == 1
    finally:
        designer.put(f"/sagemaker/templates/{team.template}", json={"environment": team.environment})
        designer.delete(f"/sagemaker/environments/{other}?force=true")
