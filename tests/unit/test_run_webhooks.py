"""A run's webhook (core/webhooks.py) when it ends, wherever and however it ends, through the execution service
on FakeEndpoints (harness.fake_comfy), delivered to a receiver on 127.0.0.1 in a thread: signed with this
ComfyUI's secret, the record as the template API shows it, once per run even when another ComfyUI ends it.
Deliveries themselves (retries, deadlines, the secret) are tests/unit/test_webhooks.py's."""

from __future__ import annotations

import pytest
import standardwebhooks
from comfyui_sagemaker.core import execution_cancels
from comfyui_sagemaker.core.execution_records import ExecutionRecords
from comfyui_sagemaker.core.webhooks import HEADER_ID, WebhookRefused, verify
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.fake_comfy import FakeComfy, publish
from harness.fake_endpoints import FakeEndpoints
from harness.gateway import WebhookReceiver
from harness.waiting import wait_for

HOOKS = {"webhook_allowed_hosts": ["127.0.0.1"]}


def plain(color: int = 7) -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": color}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "hook"}}}


def held() -> dict:
    p = plain()
    p["2"]["inputs"]["images"] = ["3", 0]
    p["3"] = {"class_type": "SMTestWait", "inputs": {"image": ["1", 0], "signal": "", "timeout": 600}}
    return p


def failing() -> dict:
    p = plain()
    p["2"]["inputs"]["images"] = ["3", 0]
    p["3"] = {"class_type": "SMTestFail", "inputs": {"image": ["1", 0], "message": "hook boom"}}
    return p


@pytest.fixture(scope="module")
def receiver():
    """One receiver for the module (its stop takes half a second); each test starts with it empty."""
    with WebhookReceiver() as r:
        yield r


@pytest.fixture
def setup(tmp_path, monkeypatch, receiver):
    monkeypatch.setattr(execution_cancels, "WATCH_INTERVAL", 0.05)  # the owner looks often: nothing here is timed
    store = FolderStore(tmp_path / "store")
    fake = FakeEndpoints(store)
    comfys = {"ana": FakeComfy(tmp_path / "ana", store, fake, role="artist", name="ana", config=HOOKS),
              "designer": FakeComfy(tmp_path / "designer", store, fake, name="designer", config=HOOKS)}
    fake.deploy(publish(store, "Env1"))
    fake.wait_state("Env1")
    receiver.received.clear()
    yield store, fake, comfys, receiver
    fake.close()  # a run held by a severed follower ends now
    for comfy in comfys.values():
        settled(fake, comfy)
        comfy.close()


def delivered(store, execution_id: str) -> dict:
    return wait_for(lambda: (hook := ExecutionRecords(store).read(execution_id)[0]["webhook"])["state"]
                    in ("delivered", "failed") and hook, 120, "the webhook to be delivered")


def settled(fake: FakeEndpoints, *comfys: FakeComfy) -> None:
    """Every ComfyUI is done with the runs it followed and their deliveries: whatever it was going to send, it
    has sent."""
    ids = [run.execution_id for run in fake.runs()]
    for comfy in comfys:
        wait_for(lambda c=comfy: not any(c.executions.live(i) for i in ids) and not c.services.webhooks.busy(), 120,
                 "runs and hooks")


@pytest.mark.parametrize("outcome", ["succeeded", "failed", "cancelled"])
def test_a_run_that_ends_posts_its_record_signed_with_this_comfyuis_secret(setup, outcome):
    store, fake, comfys, receiver = setup
    ana = comfys["ana"]
    prompt = {"succeeded": plain, "failed": failing, "cancelled": held}[outcome]()
    run = ana.executions.create(prompt, environment="Env1", webhook_url=receiver.url)
    assert run["webhook"] == {"url": receiver.url, "state": "pending", "attempts": 0, "last_status": None,
                              "last_error": None, "delivered_at": None}
    if outcome == "cancelled":
        fake.run(run["id"]).wait_started()
        ana.executions.cancel(run["id"])
    hook = delivered(store, run["id"])
    settled(fake, ana)
    assert hook["state"] == "delivered" and hook["attempts"] == 1 and hook["last_status"] == 200
    assert len(receiver.received) == 1
    headers, body, _ = receiver.received[0]
    secret = ana.services.webhooks.secret.text()
    assert verify(secret, headers, body) and headers[HEADER_ID] == run["id"]
    sent = standardwebhooks.Webhook(secret).verify(body, headers)  # a receiver's stock verifier agrees
    assert sent["type"] == "execution.ended" and sent["execution"]["id"] == run["id"]
    assert sent["execution"]["state"] == outcome and sent["execution"]["environment"] == "Env1"
    assert "client_id" not in sent["execution"] and "inputs" not in sent["execution"]
    if outcome == "succeeded":
        assert sent["execution"]["outputs"]["2"]["images"][0]["sha256"]
    if outcome == "failed":
        assert "hook boom" in sent["execution"]["error"]["message"]


def test_a_run_cancelled_from_another_comfyui_is_posted_once(setup):
    store, fake, comfys, receiver = setup
    ana, designer = comfys["ana"], comfys["designer"]
    run = ana.executions.create(held(), environment="Env1", webhook_url=receiver.url)
    fake.run(run["id"]).wait_started()
    designer.executions.cancel(run["id"])  # ends it by compare-and-swap: the designer's ComfyUI delivers it
    assert delivered(store, run["id"])["state"] == "delivered"
    assert ana.wait(run["id"])["state"] == "cancelled"  # Ana's ComfyUI saw it and stopped the run
    settled(fake, ana, designer)
    assert len(receiver.received) == 1
    assert verify(designer.services.webhooks.secret.text(), *receiver.received[0][:2])


def test_a_run_whose_follower_died_is_posted_by_the_process_that_failed_it(setup):
    store, fake, comfys, receiver = setup
    ana, designer = comfys["ana"], comfys["designer"]
    fake.resumable = False  # a real-time stream: the run cannot be followed again, so it is failed
    run = ana.executions.create(held(), environment="Env1", webhook_url=receiver.url)
    fake.run(run["id"]).wait_started().sever()
    dead = ExecutionRecords(store).read(run["id"])[0]["follower"]
    assert designer.executions.take_over(run["id"], lambda f: f == dead, "its follower stopped") == "failed"
    assert delivered(store, run["id"])["state"] == "delivered"
    assert receiver.bodies()[0]["execution"]["error"]["message"] == \
        "its follower stopped: the result was lost with the connection"


def test_a_webhook_url_inside_the_network_is_refused_before_anything_is_spent(setup):
    store, fake, comfys, receiver = setup
    ana = comfys["ana"]
    with pytest.raises(WebhookRefused, match="169.254.169.254"):
        ana.executions.create(plain(), environment="Env1", webhook_url="http://169.254.169.254/latest/")
    assert fake.invocations == [] and ana.executions.list("all")[0] == []
