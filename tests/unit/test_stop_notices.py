"""Notices when a designer ends someone else's run (issue 32, point 3), in team mode without ComfyUI processes (a
designer and an artist, each a FakeComfy on one store, one shared FakeEndpoints endpoint):

- Stop ended the runs in flight with "Endpoint did not answer / stopped answering: ..." and ComfyUI's error modal
  on the owner's page; nothing said a designer stopped it. Now each ends cancelled, "stopped by <designer>".
- A designer's cancel of someone else's run said "cancelled by <designer>" only in the message; the owner's page
  now gets who in the run's event (`error.by`), which its toast names (web/js/run_notices.js)."""

from __future__ import annotations

import pytest
from comfyui_sagemaker.core import execution_cancels
from harness.fake_comfy import FakeComfy, publish
from harness.fake_endpoints import FakeEndpoints

pytestmark = pytest.mark.parametrize("store", ["folder"], indirect=True)  # the store's own behaviour is not at stake


def held() -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": 1}},
            "2": {"class_type": "SMTestWait", "inputs": {"image": ["1", 0], "signal": "", "timeout": 600}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "held"}}}


@pytest.fixture
def team(store, tmp_path, monkeypatch):
    monkeypatch.setattr(execution_cancels, "WATCH_INTERVAL", 0.05)
    fake = FakeEndpoints(store)
    comfys = {who: FakeComfy(tmp_path / who, store, fake, role=role, name=name)
              for who, role, name in (("designer", "designer", "Dana"), ("ben", "artist", "Ben"))}
    publish(store, "Env1", ("Held1",))
    comfys["designer"].template("Held1", held(), "Env1")
    assert comfys["designer"].post("/sagemaker/endpoints", json={"environment": "Env1"}).status_code == 202
    fake.wait_state("Env1")
    yield fake, comfys["designer"], comfys["ben"]
    for comfy in comfys.values():
        comfy.close()
    fake.close()


def start(fake: FakeEndpoints, comfy: FakeComfy, page: str, queued: bool = False) -> dict:
    """A held run sent to the endpoint: running, or `queued` there behind another (it runs one at a time)."""
    r = comfy.post("/sagemaker/executions", json={"prompt": held(), "template": "Held1", "client_id": page})
    assert r.status_code == 202, r.text
    run = fake.run(r.json()["execution_id"])
    if not queued:
        run.wait_started()
    return r.json()


def test_a_stop_ends_every_run_in_flight_stopped_by_the_designer_not_with_an_error(team):
    fake, designer, ben = team
    theirs, mine = start(fake, ben, "ben-page"), start(fake, designer, "dana-page", queued=True)
    r = designer.post("/sagemaker/endpoints/Env1/stop")
    assert r.status_code == 200 and r.json()["state"] == "Stopped", r.text
    record = ben.wait(theirs["execution_id"])
    assert record["state"] == "cancelled"
    assert record["error"] == {"code": "endpoint_stopped", "message": "stopped by Dana", "by": "Dana"}
    own = designer.wait(mine["execution_id"])
    assert own["state"] == "cancelled" and own["error"] == {"code": "endpoint_stopped", "message": "stopped by Dana"}
    # Neither page was told ComfyUI's execution_error (its modal with "Find Issues"): the canvas stops, interrupted.
    for comfy, page, run in ((ben, "ben-page", theirs), (designer, "dana-page", mine)):
        kinds = [e["type"] for e in comfy.page_events(page, run["prompt_id"])]
        assert "execution_error" not in kinds and "execution_interrupted" in kinds, kinds
    # The owner's pages hear the end with who stopped it.
    told = [d for e, d in ben.page(None) if e == "sagemaker.execution" and d["id"] == theirs["execution_id"]]
    assert told and told[-1]["state"] == "cancelled" and told[-1]["error"]["by"] == "Dana"


def test_a_designers_cancel_of_someone_elses_run_tells_the_owner_who(team):
    fake, designer, ben = team
    theirs = start(fake, ben, "ben-page")
    r = designer.post(f"/sagemaker/executions/{theirs['execution_id']}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
    record = ben.wait(theirs["execution_id"])
    assert record["error"] == {"code": "cancelled", "message": "cancelled by Dana", "by": "Dana"}
    told = [d for e, d in ben.page(None) if e == "sagemaker.execution" and d["id"] == theirs["execution_id"]]
    assert told and told[-1]["error"]["by"] == "Dana" and told[-1]["template"] == "Held1"
    # One's own cancel names nobody: there is nothing to tell.
    own = start(fake, ben, "ben-page", queued=True)  # the cancelled run may still hold the endpoint
    assert ben.post(f"/sagemaker/executions/{own['execution_id']}/cancel").status_code == 200
    assert ben.wait(own["execution_id"])["error"] == {"code": "cancelled", "message": "cancelled by the user"}


def test_a_cancel_the_worker_had_to_restart_its_comfyui_for_says_so_in_the_record(team):
    """worker/cancels.py: a node that ignores interrupts gets its ComfyUI restarted, and the worker answers
    "cancelled (ComfyUI restarted to stop node X)": the record keeps who cancelled it and adds that."""
    fake, _, ben = team
    fake.manual = True  # the worker's answer is the test's word
    cancels: list[str] = []
    fake.cancel = lambda name, execution_id, token: cancels.append(execution_id)  # the worker takes its time
    own = start(fake, ben, "ben-page")
    run = fake.run(own["execution_id"])
    assert ben.post(f"/sagemaker/executions/{own['execution_id']}/cancel").status_code == 200
    assert cancels == [own["execution_id"]]
    run.answer({"status": "failed", "outputs": {},
                "error": {"code": "cancelled", "message": "cancelled (ComfyUI restarted to stop node SMTestStuck)"}})
    record = ben.wait(own["execution_id"])
    assert record["state"] == "cancelled"
    assert record["error"] == {"code": "cancelled",
                               "message": "cancelled by the user (ComfyUI restarted to stop node SMTestStuck)"}
