"""Team mode without ComfyUI processes: a designer and two artists, each a ComfyUI of its own (harness.fake_comfy:
its role, instance id and folders) on one store, folder or S3 (moto), and one shared endpoint (FakeEndpoints,
held to the real one by test_endpoints_contract.py). Roles through the routes' policy, own runs and others'
outputs, who cancels whose run and how the owner's ComfyUI learns of it, restarts, one deploy at a time, live
changes, runs that follow what the artist loaded, several users of one ComfyUI. tests/integration/test_team.py
keeps the end-to-end run and cancel across real ComfyUIs on the SageMaker path."""

from __future__ import annotations

import hashlib
import time

import pytest
from comfyui_sagemaker.core import execution_cancels
from comfyui_sagemaker.core.changes import ChangeFeed
from comfyui_sagemaker.core.execution_records import ExecutionRecords
from comfyui_sagemaker.core.executions import new_id
from comfyui_sagemaker.core.identity import Owner
from comfyui_sagemaker.core.leases import Leases, expired
from harness.fake_comfy import FakeComfy, publish
from harness.fake_endpoints import FakeEndpoints
from harness.waiting import wait_for


def plain(color: int = 0x102030) -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 2, "batch_size": 1, "color": color}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "team"}}}


def held() -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": 1}},
            "2": {"class_type": "SMTestWait", "inputs": {"image": ["1", 0], "signal": "", "timeout": 600}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "held"}}}


class Team:
    def __init__(self, store, tmp_path):
        self.store = store
        self.fake = FakeEndpoints(store)
        self.comfys = {who: FakeComfy(tmp_path / who, store, self.fake, role=role, name=who)
                       for who, role in (("designer", "designer"), ("ana", "artist"), ("ben", "artist"))}
        publish(store, "Env1", ("T1", "Held1"))
        designer = self.comfys["designer"]
        designer.template("T1", plain(), "Env1")
        designer.template("Held1", held(), "Env1")
        assert designer.post("/sagemaker/endpoints", json={"environment": "Env1"}).status_code == 202
        self.fake.wait_state("Env1")

    def __getitem__(self, who: str) -> FakeComfy:
        return self.comfys[who]

    def run(self, who: str, body: dict) -> str:
        r = self.comfys[who].post("/sagemaker/executions", json=body)
        assert r.status_code == 202, r.text
        return r.json()["execution_id"]

    def close(self) -> None:
        for comfy in self.comfys.values():
            comfy.close()
        self.fake.close()


@pytest.fixture
def team(store, tmp_path, monkeypatch):
    # The owner looks at its runs in flight often: a cancel from elsewhere is seen sooner (nothing is timed).
    monkeypatch.setattr(execution_cancels, "WATCH_INTERVAL", 0.05)
    t = Team(store, tmp_path)
    yield t
    t.close()


def refused(r, says: str = "only a designer") -> None:
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_for_role", r.text
    assert says in r.json()["error"]["message"], r.text


@pytest.mark.parametrize("store", ["folder"], indirect=True)  # the store's own behaviour is not at stake
def test_an_artist_can_read_and_run_but_not_publish_deploy_or_delete(team):
    ana = team["ana"]
    assert "T1" in [t["name"] for t in ana.get("/sagemaker/templates").json()["templates"]]
    before = ana.get("/sagemaker/templates").json()
    for r in (
        ana.post("/sagemaker/templates", json={"name": "New1", "workflow": plain(), "prompt": plain()}),
        ana.put("/sagemaker/templates/T1", json={"environment": None}),
        ana.delete("/sagemaker/templates/T1"),
        ana.post("/sagemaker/environments", json={"name": "Env9", "templates": ["T1"]}),
        ana.delete("/sagemaker/environments/Env1?force=true"),
        ana.post("/sagemaker/endpoints", json={"environment": "Env1"}),
        ana.delete("/sagemaker/endpoints/Env1"),
        ana.post("/sagemaker/endpoints/Env1/stop"),
        ana.delete("/sagemaker/models/loras/style.safetensors"),
    ):
        refused(r)
    assert ana.get("/sagemaker/templates").json() == before
    assert ana.get("/sagemaker/endpoints/Env1").json()["state"] == "InService"
    assert ana.get("/sagemaker/health").json()["role"] == "artist"
    assert (ana.base / "models" / "loras" / "style.safetensors").exists()
    # ... and runs templates.
    assert ana.wait(team.run("ana", {"prompt": plain(), "template": "T1"}))["state"] == "succeeded"


def test_each_artist_sees_their_own_runs_and_opens_anothers_outputs(team):
    ana, ben = team["ana"], team["ben"]
    mine = team.run("ana", {"prompt": plain(0x204060), "template": "T1"})
    theirs = team.run("ben", {"prompt": plain(0x405060), "template": "T1"})
    assert ana.wait(mine)["state"] == "succeeded" and ben.wait(theirs)["state"] == "succeeded"
    listed = ana.get("/sagemaker/executions").json()["executions"]
    assert [e["id"] for e in listed] == [mine]
    assert all(e["mine"] and e["owner"]["name"] == "ana" for e in listed), listed
    everyone = ana.get("/sagemaker/executions?owner=all&limit=50").json()["executions"]
    assert {mine, theirs} <= {e["id"] for e in everyone}
    assert ana.get(f"/sagemaker/executions?owner={ben.owner().key}").json()["executions"][0]["id"] == theirs
    # Ben's run opened in Ana's ComfyUI: its files are copied from the store into hers, for /view.
    record = ana.get(f"/sagemaker/executions/{theirs}").json()
    assert record["mine"] is False and record["owner"]["name"] == "ben"
    image = record["outputs"]["3"]["images"][0]
    copy = ana.base / "output" / image["subfolder"] / image["filename"]
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == image["sha256"]
    assert record["template_version"] == 2 and record["environment_version"] == 1  # bound: v2 of the template


def test_cancel_of_someone_elses_run_is_the_designers_and_never_silent(team):
    ben = team["ben"]
    execution_id = team.run("ben", {"prompt": held(), "template": "Held1"})
    run = team.fake.run(execution_id).wait_started()
    refused(team["ana"].post(f"/sagemaker/executions/{execution_id}/cancel"), "only a designer can cancel")
    assert ben.get(f"/sagemaker/executions/{execution_id}").json()["state"] == "running"
    r = team["designer"].post(f"/sagemaker/executions/{execution_id}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
    # Ben's ComfyUI sees it and stops the run at the endpoint with the run's token, which only it holds.
    assert run.wait_ended()["error"]["code"] == "interrupted"
    assert team.fake.cancels == [{"endpoint": "Env1", "execution_id": execution_id, "outcome": "running"}]
    record = ben.wait(execution_id)
    assert record["state"] == "cancelled" and "designer" in record["error"]["message"]
    assert team["designer"].post(f"/sagemaker/executions/{execution_id}/cancel").status_code == 409  # it is over
    after = team.run("ben", {"prompt": plain(0x010203), "template": "T1"})  # the endpoint is free again
    assert ben.wait(after)["state"] == "succeeded"


@pytest.mark.parametrize("store", ["folder"], indirect=True)  # the store's own behaviour is not at stake
def test_an_artist_cancels_their_own_run(team):
    ana = team["ana"]
    execution_id = team.run("ana", {"prompt": held(), "template": "Held1"})
    team.fake.run(execution_id).wait_started()
    r = ana.post(f"/sagemaker/executions/{execution_id}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
    assert ana.wait(execution_id)["state"] == "cancelled"


def test_restarting_a_comfyui_fails_only_its_own_runs_in_flight(team):
    records = ExecutionRecords(team.store)
    ana, ben = team["ana"].owner(), team["ben"].owner()

    def in_flight(owner: Owner) -> dict:
        r = {"id": new_id(owner.instance), "prompt_id": "p", "template": "T1", "environment": "Env1",
             "endpoint": "Env1", "owner": owner.to_json(), "client_id": None, "state": "running",
             "created_at": "x", "outputs": {}, "error": None}
        records.create(r)
        return r

    left_by_ana, bens = in_flight(ana), in_flight(ben)
    team["ana"].background()  # Ana's ComfyUI starting again
    assert records.read(left_by_ana["id"])[0]["state"] == "failed"
    assert "restarted" in records.read(left_by_ana["id"])[0]["error"]["message"]
    assert records.read(bens["id"])[0]["state"] == "running"  # someone else's: untouched


def test_one_deploy_of_an_environment_at_a_time_across_comfyuis(team):
    elsewhere = Leases(team.store, Owner("ffffffffffff", "another designer"))
    lease = elsewhere.acquire("Env1", "publishing")  # another designer's ComfyUI, mid-publish
    designer = team["designer"]
    try:
        r = designer.post("/sagemaker/environments", json={"name": "Env1", "templates": ["T1"]})
        assert r.status_code == 409 and r.json()["error"]["code"] == "deploy_in_progress", r.text
        assert "another designer" in r.json()["error"]["message"]
        r = designer.post("/sagemaker/endpoints", json={"environment": "Env1"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "deploy_in_progress"
        listed = {e["name"]: e for e in designer.get("/sagemaker/environments").json()["environments"]}
        assert listed["Env1"]["busy"] == {"by": "another designer", "what": "publishing"}
        assert designer.get("/sagemaker/environments/Env1?version=1").json()["version"] == 1
    finally:
        elsewhere.release(lease)
    assert team["ana"].get("/sagemaker/endpoints/Env1").json()["version"] == 1  # what it serves, for everyone
    assert [i["version"] for i in team.fake.invocations] == [] and len(team.fake.list()) == 1


def test_a_killed_publishers_lease_expires_and_the_next_publish_proceeds(team):
    dead = Leases(team.store, Owner("eeeeeeeeeeee", "crashed designer"), ttl=0.2, renew_every=3600)
    lease = dead.acquire("Env1", "publishing")
    lease.stop.set()  # the process died: nobody renews it
    wait_for(lambda: (current := Leases(team.store, team["designer"].owner()).current("Env1")) is None
             or expired(current), 120, "the dead publisher's lease to expire")
    mine = Leases(team.store, team["designer"].owner())
    mine.release(mine.acquire("Env1", "publishing"))


def test_a_change_in_one_comfyui_reaches_the_others(team, monkeypatch):
    ben, designer = team["ben"], team["designer"]
    monkeypatch.setattr(ChangeFeed.start, "__defaults__", (0.05,))  # it looks often: nothing here is timed
    ben.background()  # ben's ComfyUI watches the store for the others' changes, as at its start
    # ... while a page of it looks (core/pages.py): Ben's sidebar is open
    assert ben.post("/sagemaker/events/subscribe", json={"client_id": "ben-page"}).status_code == 200
    changed = ("sagemaker.changed", {"collection": "templates"})
    made: list[str] = []
    deadline = time.monotonic() + 60
    while changed not in ben.page(None):  # a change made before the watcher's first look is its starting point
        assert time.monotonic() < deadline, "no sagemaker.changed for templates reached Ben's pages"
        made.append(f"New{len(made)}")
        assert designer.post("/sagemaker/templates", json={"name": made[-1], "workflow": plain(),
                                                           "prompt": plain()}).status_code == 201
        look = time.monotonic() + 2  # a few of the watcher's looks; then another change, in case it came too early
        while changed not in ben.page(None) and time.monotonic() < min(look, deadline):
            time.sleep(0.02)
    assert set(made) <= {t["name"] for t in ben.get("/sagemaker/templates").json()["templates"]}


@pytest.mark.parametrize("store", ["folder"], indirect=True)  # the store's own behaviour is not at stake
def test_a_run_follows_the_environment_the_artist_loaded(team):
    designer, ana = team["designer"], team["ana"]
    publish(team.store, "Env2", ("T1",))
    loaded = ana.get("/sagemaker/templates/T1").json()  # what Ana loaded: bound to Env1
    assert designer.put("/sagemaker/templates/T1", json={"environment": "Env2"}).status_code == 200
    execution_id = team.run("ana", {"prompt": plain(0x0A0B0C), "template": "T1",
                                    "template_version": loaded["version"], "environment": loaded["environment"]})
    record = ana.wait(execution_id)
    assert record["state"] == "succeeded" and record["environment"] == "Env1"
    assert record["template_version"] == loaded["version"] and record["environment_version"] == 1
    # Without what it loaded, a run takes the binding as it is now: Env2, which no endpoint runs.
    r = ana.post("/sagemaker/executions", json={"prompt": plain(), "template": "T1"})
    assert r.status_code == 409 and "Env2" in r.json()["error"]["message"], r.text


@pytest.mark.parametrize("store", ["folder"], indirect=True)  # the store's own behaviour is not at stake
def test_under_multi_user_each_user_cancels_only_their_own_runs_on_every_face(store, tmp_path):
    """Several people through one designer's ComfyUI (--multi-user, told apart by ComfyUI's comfy-user header):
    none may cancel another's run, on the execution route or the v2 one; the owner may."""
    fake = FakeEndpoints(store)
    shared = FakeComfy(tmp_path / "shared", store, fake, multi_user=True)
    try:
        fake.deploy(publish(store, "Env1"))
        fake.wait_state("Env1")
        alice, bob = {"comfy-user": "alice"}, {"comfy-user": "bob"}
        r = shared.post("/sagemaker/executions", json={"prompt": held(), "environment": "Env1"}, headers=alice)
        assert r.status_code == 202, r.text
        execution_id = r.json()["execution_id"]
        fake.run(execution_id).wait_started()
        for refusal in (shared.post(f"/sagemaker/executions/{execution_id}/cancel", headers=bob),
                        shared.post(f"/sagemaker/v2/Env1/api/v2/jobs/{execution_id}/cancel", headers=bob),
                        shared.post(f"/sagemaker/executions/{execution_id}/cancel")):  # no header: not alice
            refused(refusal, "only their own runs")
        assert shared.get(f"/sagemaker/executions/{execution_id}").json()["state"] == "running"
        assert shared.get("/sagemaker/executions", headers=bob).json()["executions"] == []  # alice's, not bob's
        mine = shared.post(f"/sagemaker/executions/{execution_id}/cancel", headers=alice)
        assert mine.status_code == 200 and mine.json()["state"] == "cancelled", mine.text
        assert fake.cancels[-1]["outcome"] == "running"
    finally:
        shared.close()
        fake.close()
