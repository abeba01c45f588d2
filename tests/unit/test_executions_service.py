"""Prompt on AWS through the execution service (core/executions.py) and its routes, on a ComfyUI without a
ComfyUI process (harness.fake_comfy) and an endpoint without a worker (harness.fake_endpoints, held to the real
one by test_endpoints_contract.py): runs, the events a page gets and in which order, outputs, refusals before
anything is spent, failures, cancels, a restart, runs taken over from a follower that died, retention.
tests/integration/test_executions.py keeps the end-to-end runs on a real ComfyUI and local endpoint."""

from __future__ import annotations

import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from comfyui_sagemaker.core import cancel_tokens, execution_cancels, executions, retention
from comfyui_sagemaker.core.execution_records import INFLIGHT, ExecutionRecords
from comfyui_sagemaker.core.executions import PREVIEW, ExecutionService, new_id
from comfyui_sagemaker.core.identity import Owner
from comfyui_sagemaker.core.store import blob_key
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.fake_comfy import FakeComfy, publish
from harness.fake_endpoints import FakeEndpoints
from harness.images import png
from harness.prompts import scale_prompt
from harness.waiting import wait_for

ENDS = ("execution_success", "execution_error", "execution_interrupted")


class Studio:
    def __init__(self, tmp_path, slots: int = 1):
        self.store = FolderStore(tmp_path / "store")
        self.fake = FakeEndpoints(self.store, slots=slots)
        self.comfy = FakeComfy(tmp_path / "designer", self.store, self.fake)
        self.manifest = publish(self.store, "Env1", ("T1",))
        self.fake.deploy(self.manifest)
        self.fake.wait_state("Env1")
        (self.comfy.base / "input" / "ex.png").write_bytes(png(4, 4, (200, 100, 50)))
        self.comfy.template("T1", prompt(), "Env1")
        self.tmp = tmp_path

    def run(self, p: dict | None = None, **kw) -> dict:
        return self.comfy.executions.create(p or prompt(), template=kw.pop("template", "T1"), **kw)

    def close(self) -> None:
        self.comfy.close()
        self.fake.close()


def prompt(image="ex.png", factor=0.5, prefix="ex", wait_for=None):
    return scale_prompt(image, factor, prefix, wait_for, timeout=600)


@pytest.fixture
def studio(tmp_path):
    s = Studio(tmp_path)
    yield s
    s.close()


@pytest.fixture
def quick_watch(monkeypatch):
    """The owner looks at its runs in flight often (a cancel from elsewhere is seen sooner; nothing is timed)."""
    monkeypatch.setattr(execution_cancels, "WATCH_INTERVAL", 0.05)


def error(r, status, code):
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code, r.text
    return r.json()["error"]["message"]


# a run, as the page sees it

def test_a_run_shows_on_the_page_that_queued_it_as_if_it_ran_locally(studio):
    s = studio
    r = s.comfy.post("/sagemaker/executions", json={"prompt": prompt(prefix="first"), "template": "T1",
                                                    "client_id": "page-1"})
    assert r.status_code == 202, r.text
    body = r.json()
    record = s.comfy.wait(body["execution_id"])
    assert record["state"] == "succeeded" and record["template"] == "T1" and record["environment"] == "Env1"
    assert record["template_version"] == 2 and record["environment_version"] == 1  # bound: v2 of the template
    events = s.comfy.page_events("page-1", body["prompt_id"])
    types = [e["type"] for e in events]
    # ComfyUI's own events, in the order the endpoint sent them, under this run's prompt id.
    run = s.fake.run(body["execution_id"])
    assert types == [e["type"] for e in run.events], types
    assert types[0] == "execution_start" and types[-1] == "execution_success" and "progress_state" in types
    executed = next(e for e in events if e["type"] == "executed")["data"]
    image = executed["output"]["images"][0]
    assert executed["node"] == "3" and image["subfolder"] == f"sagemaker/{body['execution_id']}"
    copy = s.comfy.base / "output" / image["subfolder"] / image["filename"]
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == image["sha256"]  # /view serves it from here
    assert record["outputs"]["3"]["images"][0] == image
    listed = s.comfy.get("/sagemaker/executions?template=T1").json()["executions"]
    assert listed[0]["id"] == body["execution_id"]
    assert "client_id" not in s.comfy.get(f"/sagemaker/executions/{body['execution_id']}").json()
    # Its state changes went to every page, in order; none of its ComfyUI events did.
    states = [d["state"] for e, d in s.comfy.page(None) if e == "sagemaker.execution" and d["id"] == record["id"]]
    assert states == ["queued", "running", "succeeded"]
    assert not [e for e, d in s.comfy.page(None) if not e.startswith("sagemaker.")]


def test_a_record_names_the_environment_version_its_endpoint_serves_not_the_newest(studio):
    """A version published but not deployed (or whose deploy failed) is not what runs: the record says the
    version of the endpoint that accepted the run."""
    s = studio
    v2 = publish(s.store, "Env1", ("T1",), version=2)  # published, never deployed: the endpoint serves v1
    record = s.comfy.wait(s.run()["id"])
    assert record["state"] == "succeeded" and record["environment_version"] == 1
    s.fake.deploy(v2)
    s.fake.wait_state("Env1")
    record = s.comfy.wait(s.run()["id"])
    assert record["environment_version"] == 2


def test_events_go_only_to_the_page_that_queued_and_a_programs_run_paints_on_none(studio):
    s = studio
    mine = s.run(prompt(prefix="mine"), client_id="page-1")
    nobody = s.run(prompt(prefix="nobody"))  # a program's run: ComfyUI would broadcast its node ids
    for r in (mine, nobody):
        assert s.comfy.wait(r["id"])["state"] == "succeeded"
    assert s.comfy.page_events("page-1", mine["prompt_id"])
    assert s.comfy.page_events("page-1", nobody["prompt_id"]) == []
    assert {sid for _, _, sid in s.comfy.sent} == {None, "page-1"}
    assert not [e for e, _, sid in s.comfy.sent if sid is None and not e.startswith("sagemaker.")]


def test_inputs_reach_the_endpoint_by_content_with_the_runs_cancel_digest(studio):
    s = studio
    record = s.comfy.wait(s.run()["id"])
    body = s.fake.invocations[-1]
    data = (s.comfy.base / "input" / "ex.png").read_bytes()
    assert body["inputs"] == {"ex.png": hashlib.sha256(data).hexdigest()}
    assert s.store.get(blob_key(body["inputs"]["ex.png"])).data == data
    assert body["execution_id"] == record["id"] and body["prompt"] == prompt()
    assert cancel_tokens.is_digest(body[cancel_tokens.DIGEST_FIELD])


def test_ten_concurrent_executions_all_succeed(studio):
    s = studio

    def run(i):
        r = s.comfy.post("/sagemaker/executions", json={"prompt": prompt(factor=0.1 + i / 20, prefix=f"c{i}"),
                                                        "template": "T1"})
        assert r.status_code == 202, r.text
        return s.comfy.wait(r.json()["execution_id"])["state"]

    with ThreadPoolExecutor(10) as pool:  # one ComfyUI at the endpoint: nine wait their turn there
        assert list(pool.map(run, range(10))) == ["succeeded"] * 10


def test_progress_previews_and_notes_reach_the_page_in_order(studio):
    s = studio
    s.fake.manual = True
    record = s.run(client_id="page-1")
    run = s.fake.run(record["id"]).wait_started()
    run.emit("execution_start", {"timestamp": 1})
    run.emit("sagemaker.note", {"message": "waiting for an instance"})
    assert s.comfy.executions.get(record["id"])["note"] == "waiting for an instance"
    run.progress("2", 3, 10)
    jpeg = b"\xff\xd8\xff\xe0preview"
    import base64

    run.emit(PREVIEW, {"image_type": "image/jpeg", "image": base64.b64encode(jpeg).decode(), "node_id": "2"})
    run.emit("status", {"status": {}})  # not one of the run's events: never relayed
    run.executed_node("3", {"out.png": png(2, 2, (1, 2, 3))})
    run.succeed()
    assert s.comfy.wait(record["id"])["state"] == "succeeded"
    sent = [(e, d) for e, d in s.comfy.page("page-1") if (d or {}).get("prompt_id") == record["prompt_id"]]
    assert [e for e, _ in sent] == ["execution_start", "progress", PREVIEW, "executed", "execution_success"]
    assert sent[1][1]["value"] == 3 and sent[2][1]["image"] == jpeg and sent[2][1]["node_id"] == "2"
    assert sent[3][1]["output"]["images"][0]["filename"] == "out.png"


def test_an_endpoint_that_shows_only_the_end_still_gives_the_page_its_outputs_and_success(studio):
    """An async endpoint relays coarse progress only: the page gets the executed and execution_success it
    did not see from the result."""
    s = studio
    s.fake.manual = True
    record = s.run(client_id="page-1")
    run = s.fake.run(record["id"]).wait_started()
    data = png(2, 2, (9, 9, 9))
    digest = hashlib.sha256(data).hexdigest()
    s.store.put(blob_key(digest), data)
    item = {"filename": "late.png", "subfolder": "", "type": "output", "sha256": digest, "size": len(data)}
    run.answer({"status": "succeeded", "outputs": {"3": {"images": [item]}}})
    done = s.comfy.wait(record["id"])
    assert done["state"] == "succeeded" and done["outputs"]["3"]["images"][0]["filename"] == "late.png"
    types = [e["type"] for e in s.comfy.page_events("page-1", record["prompt_id"])]
    assert types == ["executed", "execution_success"]


# refused before anything is spent

def test_nothing_chosen_unknown_template_and_environment(studio):
    c = studio.comfy
    assert "load a template from the SageMaker templates tab" in error(
        c.post("/sagemaker/executions", json={"prompt": prompt()}), 400, "bad_request")
    error(c.post("/sagemaker/executions", json={"prompt": prompt(), "template": "NoSuchT1"}), 404, "not_found")
    error(c.post("/sagemaker/executions", json={"prompt": prompt(), "environment": "NoSuchE1"}), 404,
          "environment_not_found")
    error(c.post("/sagemaker/executions", json={"template": "x"}), 400, "bad_request")
    assert studio.fake.invocations == []


def test_no_endpoint_is_409_and_one_still_creating_says_so(studio):
    s = studio
    publish(s.store, "Env2")
    message = error(s.comfy.post("/sagemaker/executions", json={"prompt": prompt(), "environment": "Env2"}), 409,
                    "endpoint_not_ready")
    assert "no endpoint" in message
    s.fake.hold_starts = True
    assert s.comfy.post("/sagemaker/endpoints", json={"environment": "Env2"}).json()["state"] == "Creating"
    message = error(s.comfy.post("/sagemaker/executions", json={"prompt": prompt(), "environment": "Env2"}), 409,
                    "endpoint_not_ready")
    assert "Creating" in message
    assert s.fake.invocations == []


def test_a_missing_input_is_400_and_nothing_is_invoked_or_recorded(studio):
    s = studio
    message = error(s.comfy.post("/sagemaker/executions", json={"prompt": prompt(image="nope.png"),
                                                                "template": "T1"}), 400, "input_missing")
    assert "nope.png" in message
    assert s.comfy.get("/sagemaker/executions?limit=500").json()["executions"] == []
    assert s.fake.invocations == []


def test_a_prompt_needing_what_the_environment_lacks_is_400(studio):
    c = studio.comfy
    p = prompt()
    p["5"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny.safetensors"}}
    message = error(c.post("/sagemaker/executions", json={"prompt": p, "template": "T1"}), 400, "environment_lacks")
    assert "tiny.safetensors" in message
    p = prompt()
    p["5"] = {"class_type": "SomeoneElsesNode", "inputs": {}}
    assert "SomeoneElsesNode" in error(c.post("/sagemaker/executions", json={"prompt": p, "template": "T1"}), 400,
                                       "environment_lacks")
    assert studio.fake.invocations == []


def test_the_extensions_own_nodes_are_no_pack_an_environment_must_carry(studio):
    """The worker has this extension built in (tests/integration keeps a run of them on a real worker)."""
    p = prompt(prefix="param")
    p["9"] = {"class_type": "SageMakerParamFloat", "inputs": {
        "name": "factor", "description": "", "default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01, "required": False}}
    p["2"]["inputs"]["factor"] = ["9", 0]
    assert studio.comfy.wait(studio.run(p)["id"])["state"] == "succeeded"


# failures

def test_a_remote_failure_marks_the_node_and_carries_the_message(studio):
    s = studio
    p = prompt()
    p["3"]["inputs"]["images"] = ["4", 0]
    p["4"] = {"class_type": "SMTestFail", "inputs": {"image": ["2", 0], "message": "remote boom"}}
    r = s.run(p, client_id="page-1")
    record = s.comfy.wait(r["id"])
    assert record["state"] == "failed" and "remote boom" in record["error"]["message"]
    events = s.comfy.page_events("page-1", r["prompt_id"])
    err = events[-1]
    assert err["type"] == "execution_error" and err["data"]["node_id"] == "4"
    assert "remote boom" in err["data"]["exception_message"]
    assert [e["type"] for e in events].count("execution_error") == 1  # the endpoint said it: no second one


@pytest.mark.parametrize("answer, title, says, node", [
    ({"status": "failed", "outputs": {}, "error": {"code": "timeout", "message": "ran over 3600 s"}},
     "Run took too long", ("ran over 3600 s", "ran over 3600 s"), None),
    ({"status": "failed", "outputs": {}, "error": {"code": "prompt_invalid", "message": "refused", "details": {
        "node_errors": {"2": {"class_type": "SMTestScale", "errors": [{"message": "bad", "details": "factor"}]}}}}},
     "Prompt refused by the endpoint", ("refused", "bad: factor"), "2"),
    ({"status": "succeeded", "outputs": {"3": {"images": [{"filename": "x.png", "sha256": "z" * 64}]}}},
     "Output could not be trusted", ("malformed digest", "malformed digest"), None),
], ids=["timeout", "prompt_invalid", "bad_output"])
def test_a_failure_outside_a_node_is_said_to_the_page_in_its_words(studio, answer, title, says, node):
    """The record keeps the endpoint's words; the page gets ComfyUI's error dialog, on the node the endpoint's
    validation refused if it said so."""
    s = studio
    s.fake.manual = True
    r = s.run(client_id="page-1")
    s.fake.run(r["id"]).wait_started().answer(answer)
    record = s.comfy.wait(r["id"])
    assert record["state"] == "failed" and says[0] in record["error"]["message"]
    err = s.comfy.page_events("page-1", r["prompt_id"])[-1]
    assert err["type"] == "execution_error" and err["data"]["exception_type"] == title
    assert says[1] in err["data"]["exception_message"] and err["data"]["node_id"] == node


def test_a_worker_that_dies_fails_the_run_with_the_reason(studio):
    s = studio
    r = s.run(prompt(prefix="die", wait_for=str(s.tmp / "never")), client_id="page-1")
    s.fake.run(r["id"]).wait_started()
    s.fake.kill("Env1")
    record = s.comfy.wait(r["id"])
    assert record["state"] == "failed" and record["error"]["code"] == "invocation_failed"
    assert record["error"]["message"]
    err = s.comfy.page_events("page-1", r["prompt_id"])[-1]
    assert err["type"] == "execution_error" and err["data"]["exception_type"] == "Endpoint did not answer"


# cancels by the owner

def test_cancel_of_a_running_run_stops_it_at_the_endpoint_with_its_token(studio):
    s = studio
    never = s.tmp / "never"
    r = s.run(prompt(prefix="cx", wait_for=str(never)), client_id="page-1")
    run = s.fake.run(r["id"]).wait_started()
    cancelled = s.comfy.post(f"/sagemaker/executions/{r['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled", cancelled.text
    assert run.wait_ended()["error"]["code"] == "interrupted"  # the endpoint stopped it: the token was the run's
    assert s.fake.cancels == [{"endpoint": "Env1", "execution_id": r["id"], "outcome": "running"}]
    record = s.comfy.wait(r["id"])
    assert record["state"] == "cancelled" and record["error"]["code"] == "cancelled"  # its end does not overwrite
    assert "execution_interrupted" in [e["type"] for e in s.comfy.page_events("page-1", r["prompt_id"])]
    error(s.comfy.post(f"/sagemaker/executions/{r['id']}/cancel"), 409, "conflict")
    error(s.comfy.post("/sagemaker/executions/20990101T000000000000-00000000/cancel"), 404, "not_found")
    # The endpoint is free again: the next run goes through.
    assert s.comfy.wait(s.run(prompt(prefix="after"))["id"])["state"] == "succeeded"


def test_cancel_of_a_run_queued_at_its_endpoint_never_runs_it(studio):
    s = studio
    first = s.run(prompt(prefix="held", wait_for=str(s.tmp / "go")))
    s.fake.run(first["id"]).wait_started()
    second = s.run(prompt(prefix="queued"))
    queued = s.fake.run(second["id"])
    assert queued.state == "queued"  # one ComfyUI at the endpoint, busy with the first
    assert s.comfy.executions.cancel(second["id"])["state"] == "cancelled"
    assert queued.wait_ended()["error"]["code"] == "cancelled" and queued.events == []
    assert s.fake.cancels[-1]["outcome"] == "queued"
    (s.tmp / "go").touch()
    assert s.comfy.wait(first["id"])["state"] == "succeeded"
    assert s.comfy.wait(second["id"])["state"] == "cancelled"


def test_cancel_of_a_run_not_yet_sent_sends_nothing_to_the_endpoint(studio):
    s = studio
    c = s.comfy.services
    svc = ExecutionService(c.store, c.templates, c.environments, c.endpoints, c.host, c.hash_cache,
                           c.send_event, max_workers=1, owner=c.owner)  # one run followed at a time
    try:
        first = svc.create(prompt(prefix="held", wait_for=str(s.tmp / "go")), template="T1")
        s.fake.run(first["id"]).wait_started()
        waiting = svc.create(prompt(prefix="waiting"), template="T1")
        assert svc.get(waiting["id"])["state"] == "queued"
        assert svc.cancel(waiting["id"])["state"] == "cancelled"
        (s.tmp / "go").touch()
        wait_for(lambda: svc.get(first["id"])["state"] == "succeeded", 120, "the first run to end")
        wait_for(lambda: not svc.live(waiting["id"]), 120, "the cancelled run to be let go")
        assert [b["execution_id"] for b in s.fake.invocations] == [first["id"]]
        assert s.fake.cancels == [] and svc.get(waiting["id"])["state"] == "cancelled"
    finally:
        svc.pool.shutdown(wait=True)


# a restart, a follower that died, retention

def test_a_restart_fails_this_comfyuis_runs_its_previous_life_left_in_flight(studio):
    s = studio
    records = ExecutionRecords(s.store)
    me, other = s.comfy.owner(), Owner("bbbbbbbbbbbb", "someone else")

    def left(owner: Owner) -> dict:
        r = {"id": new_id(owner.instance), "prompt_id": "p", "template": "T1", "environment": "Env1",
             "endpoint": "Env1", "owner": owner.to_json(), "client_id": None, "state": "running",
             "created_at": "x", "outputs": {}, "error": None, "follower": f"{owner.instance}-0123456789ab"}
        records.create(r)
        return r

    mine, theirs = left(me), left(other)
    legacy = new_id()
    s.store.put(f"executions/{legacy}.json", json.dumps({"id": legacy, "state": "running"}).encode())
    s.comfy.background()  # what ComfyUI's start runs
    stored = records.read(mine["id"])[0]
    assert stored["state"] == "failed" and "restarted" in stored["error"]["message"]
    assert records.read(theirs["id"])[0]["state"] == "running"  # someone else's: untouched
    assert records.read(legacy)[0] == {"id": legacy, "state": "running"}  # an older version's: never rewritten


def test_a_run_whose_follower_died_is_taken_over_where_the_endpoint_answers_for_it(tmp_path):
    """Two followers of one owner (a gateway's replicas): the first is killed mid-run; the second takes the
    run over (the endpoint answers for it to anyone, as SageMaker's async endpoints do) and it completes."""
    store = FolderStore(tmp_path / "store")
    fake = FakeEndpoints(store)
    fake.resumable = True
    first = FakeComfy(tmp_path / "first", store, fake)
    second = FakeComfy(tmp_path / "second", store, fake)
    try:
        fake.deploy(publish(store, "Env1"))
        fake.wait_state("Env1")
        plain = {"1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": 1}},
                 "2": {"class_type": "SMTestWait", "inputs": {"image": ["1", 0], "signal": "", "timeout": 600}},
                 "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "taken"}}}
        r = first.executions.create(plain, environment="Env1")
        run = fake.run(r["id"]).wait_started()
        wait_for(lambda: first.executions.get(r["id"]).get("resume"), 120, "the run to say how to follow it")
        dead = ExecutionRecords(store).read(r["id"])[0]["follower"]
        run.sever()  # the first follower is killed: it hears nothing more
        assert second.executions.take_over(r["id"], lambda f: f == dead, "its follower stopped") == "followed"
        run.release()
        done = second.wait(r["id"])
        assert done["state"] == "succeeded" and "followed again" in done["note"]
        assert done["follower"] == second.executions.follower.id
        image = done["outputs"]["3"]["images"][0]
        assert (second.base / "output" / image["subfolder"] / image["filename"]).is_file()
        assert fake.cancels == []  # the token died with the first follower: nothing asked the endpoint to stop
        wait_for(lambda: not [k for k in store.list(INFLIGHT) if r["id"] in k], 120, "the run's markers to go")
    finally:
        first.close()
        second.close()
        fake.close()


def test_a_run_whose_follower_died_is_failed_where_the_endpoint_cannot_answer_for_it(studio):
    s = studio
    s.fake.resumable = False  # a real-time stream: answered to its invoker's connection only
    r = s.run(prompt(prefix="lost", wait_for=str(s.tmp / "never")))
    run = s.fake.run(r["id"]).wait_started()
    dead = ExecutionRecords(s.store).read(r["id"])[0]["follower"]
    run.sever()
    other = FakeComfy(s.tmp / "other", s.store, s.fake)
    try:
        assert other.executions.take_over(r["id"], lambda f: f == dead, "its follower stopped") == "failed"
        record = ExecutionRecords(s.store).read(r["id"])[0]
        assert record["state"] == "failed" and record["error"] == {
            "code": "interrupted", "message": "its follower stopped: the result was lost with the connection"}
        assert s.fake.cancels == []  # the endpoint runs it to its end: only its invoker had the token
        assert other.executions.take_over(r["id"], lambda f: f == dead, "again") == "ended"
    finally:
        other.close()


def test_retention_removes_a_runs_record_its_output_blobs_and_copies_but_not_an_environments_blobs(
        studio, monkeypatch):
    s = studio
    record = s.comfy.wait(s.run()["id"])
    image = record["outputs"]["3"]["images"][0]
    copy = s.comfy.base / "output" / image["subfolder"]
    model = s.manifest["models"][0]["sha256"]
    assert copy.is_dir() and s.store.exists(blob_key(image["sha256"]))
    assert s.comfy.services.apply_retention() == 0  # 30 days: nothing is old yet
    later = datetime.now(timezone.utc) + timedelta(days=31)

    class Later(datetime):
        @classmethod
        def now(cls, tz=None):
            return later

    monkeypatch.setattr(executions, "datetime", Later)
    monkeypatch.setattr(retention, "datetime", Later)
    assert s.comfy.services.apply_retention() == 1
    assert ExecutionRecords(s.store).read(record["id"]) is None and not copy.exists()
    assert not s.store.exists(blob_key(image["sha256"])) and s.store.exists(blob_key(model))


def test_a_designers_comfyui_only_applies_retention(tmp_path):
    store = FolderStore(tmp_path / "store")
    fake = FakeEndpoints(store)
    artist = FakeComfy(tmp_path / "artist", store, fake, role="artist")
    try:
        assert artist.services.apply_retention() == 0
    finally:
        artist.close()


def test_runs_in_flight_hold_one_follower_lease_that_goes_with_the_last(studio):
    s = studio
    go = s.tmp / "go"
    a = s.run(prompt(prefix="a", wait_for=str(go)))
    s.fake.run(a["id"]).wait_started()
    leases = [k for k in s.store.list(INFLIGHT) if k.count("/") == 2]
    assert len(leases) == 1, s.store.list(INFLIGHT)
    go.touch()
    s.comfy.wait(a["id"])
    wait_for(lambda: not s.store.list(INFLIGHT), 120, "the lease and markers to go")


def test_a_run_started_while_another_thread_cancels_it_ends_once(studio):
    """A cancel racing the run's start: one end, cancelled, whatever the order."""
    s = studio
    s.fake.manual = True
    r = s.run()
    barrier = threading.Barrier(2)
    out = {}

    def cancel():
        barrier.wait()
        out["cancel"] = s.comfy.executions.cancel(r["id"])

    t = threading.Thread(target=cancel)
    t.start()
    barrier.wait()
    t.join(30)
    assert out["cancel"]["state"] == "cancelled"
    record = s.comfy.wait(r["id"])
    assert record["state"] == "cancelled"
    states = [d["state"] for e, d in s.comfy.page(None) if e == "sagemaker.execution" and d["id"] == r["id"]]
    assert states.count("cancelled") == 1 and states[-1] == "cancelled", states
