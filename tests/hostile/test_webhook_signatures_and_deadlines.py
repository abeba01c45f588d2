"""Hostile input for webhooks (issue 25, point 8), through the composition root (services.py) on a folder
store: a receiver that trickles its answer one byte at a time is given up at the attempt's timeout, which is
for the whole attempt (connect, send, the whole answer), not per read; attempts are counted when they
start; a corrupt secret ends the delivery `failed` with the reason, or delivers it once the file is fixed,
never `sending` for good.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from comfyui_sagemaker.core import config as config_mod
from comfyui_sagemaker.core.config import Config
from comfyui_sagemaker.core.execution_records import ExecutionRecords
from comfyui_sagemaker.core.webhooks import pending
from comfyui_sagemaker.services import Services
from harness.gateway import WebhookReceiver
from harness.http_server import TrickleServer
from harness.waiting import wait_for

RUN_ID = "20260101T000000000000-0123abcd"
SECRET_KEY = "webhooks/secret.json"


def configure(folder: Path, tmp_path: Path, **values) -> Config:
    """A configuration folder on the test's store (the CLI reads the same one)."""
    folder.mkdir(parents=True, exist_ok=True)
    values = {"store": "folder", "store_path": str(tmp_path / "store"), "webhook_allowed_hosts": ["127.0.0.1"],
              **values}
    (folder / "config.json").write_text(json.dumps(values))
    return config_mod.load(folder, environ={})


def services(tmp_path: Path, retry: int = 30, timeout: int = 5) -> Services:
    """A ComfyUI's services."""
    cfg = configure(tmp_path / "config", tmp_path, webhook_retry_seconds=retry, webhook_timeout_seconds=timeout)
    return Services(cfg, None, tmp_path / "config")


def end_run(svc: Services, url: str, checked: bool = True) -> None:
    """A run with a webhook ends here (created after the URL check, as a run is, unless not `checked`)."""
    record = {"id": RUN_ID, "state": "succeeded", "owner": {"instance": "abc", "name": "t"}, "template": None,
              "created_at": "2026-01-01T00:00:00Z", "webhook": pending(svc.webhooks.check(url) if checked else url)}
    ExecutionRecords(svc.store).create(record)
    svc.webhooks.ended(record)


def hook(svc: Services) -> dict:
    return ExecutionRecords(svc.store).read(RUN_ID)[0]["webhook"]


def final(svc: Services, timeout: float = 60) -> dict:
    return wait_for(lambda: hook(svc) if hook(svc)["state"] in ("delivered", "failed") else None, timeout,
                    "the delivery's final state")


# --- point 8: every wait has a deadline -----------------------------------------------------------------------

@pytest.mark.parametrize("head", [b"", b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n"],
                         ids=["status-line", "body"])
def test_a_receiver_trickling_its_answer_is_given_up_at_the_attempt_timeout(tmp_path, head):
    svc = services(tmp_path, retry=2, timeout=1)
    # One byte every 0.2 s, for ever: each read gets a byte well within any per-read timeout.
    with TrickleServer(head=head, answer=head or b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100, interval=0.2) \
            as receiver:
        end_run(svc, receiver.url + "/hook")
        done = final(svc)
    assert done["state"] == "failed" and done["attempts"] >= 1 and done["last_status"] is None
    assert "timed out" in done["last_error"]


def test_an_attempt_is_counted_when_it_starts(tmp_path):
    svc = services(tmp_path, retry=2, timeout=30)
    with TrickleServer(hang=True) as receiver:  # takes the request, never answers
        end_run(svc, receiver.url + "/hook")
        assert receiver.received.wait(30)
        held = hook(svc)  # the first attempt is still open: the record already counts it
        svc.webhooks.drain(0)
    assert held["state"] == "sending" and held["attempts"] == 1
    final(svc)  # the receiver gone, the delivery ends


def test_a_corrupt_secret_fails_the_delivery_with_the_reason_never_left_sending(tmp_path):
    svc = services(tmp_path, retry=2)
    svc.store.put(SECRET_KEY, b"{not json")
    with WebhookReceiver() as receiver:
        end_run(svc, receiver.url, checked=False)
        done = final(svc)
    assert done["state"] == "failed" and done["attempts"] >= 1
    assert "not signed" in done["last_error"]
    assert not receiver.received  # nothing unsigned went out


def test_a_secret_fixed_during_the_retries_is_used(tmp_path):
    svc = services(tmp_path, retry=120)
    svc.store.put(SECRET_KEY, b"{not json")
    with WebhookReceiver() as receiver:
        end_run(svc, receiver.url, checked=False)
        wait_for(lambda: hook(svc).get("last_error"), 30, "a failed attempt recorded")
        svc.store.put(SECRET_KEY, json.dumps({"secret": "ab" * 32}).encode())  # the designer fixes it
        done = final(svc)
    assert done["state"] == "delivered", done
