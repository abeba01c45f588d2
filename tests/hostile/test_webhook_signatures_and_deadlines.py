"""Hostile input for webhooks (issue 25, points 5 and 8), through the composition root (services.py) on a
folder store, as a ComfyUI and as a gateway make them:

- forgery: the signing secret is nowhere in the store (every artist reads it); it is the process's own file,
  readable by its owner only; the store's old secret is not used, and the CLI deletes it;
- replay: the signature covers the id (Standard Webhooks, checked with the stock verifier), so a captured
  delivery resent under a new id does not verify;
- a process without a secret (a gateway given none) refuses a webhook_url before anything is spent;
- hangs: a receiver that trickles its answer one byte at a time is given up at the attempt's timeout (which
  is for the whole attempt, not per read), attempts are counted when they start, and a corrupt secret ends
  the delivery `failed` with the reason, or delivers it once the file is fixed, never `sending` for good.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import standardwebhooks
from comfyui_sagemaker import cli
from comfyui_sagemaker.core import config as config_mod
from comfyui_sagemaker.core.config import Config
from comfyui_sagemaker.core.errors import BadRequest
from comfyui_sagemaker.core.execution_records import ExecutionRecords
from comfyui_sagemaker.core.webhooks import HEADER_ID, pending, verify
from comfyui_sagemaker.gateway.app import GatewayContext
from comfyui_sagemaker.services import Services
from harness.gateway import WebhookReceiver
from harness.http_server import TrickleServer
from harness.waiting import wait_for

RUN_ID = "20260101T000000000000-0123abcd"
LEGACY = "webhooks/secret.json"
SECRET_FILE = "webhook_secret"
GOOD_SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVoxMjM0NTY="  # 32 bytes, base64


@pytest.fixture(autouse=True)
def no_secret_in_environment(monkeypatch):
    monkeypatch.delenv("COMFYUI_SAGEMAKER_WEBHOOK_SECRET", raising=False)


def configure(folder: Path, tmp_path: Path, **values) -> Config:
    """A configuration folder on the test's store (the CLI reads the same one)."""
    folder.mkdir(parents=True, exist_ok=True)
    values = {"store": "folder", "store_path": str(tmp_path / "store"), "webhook_allowed_hosts": ["127.0.0.1"],
              **values}
    (folder / "config.json").write_text(json.dumps(values))
    return config_mod.load(folder, environ={})


def services(tmp_path: Path, retry: int = 30, timeout: int = 5) -> Services:
    """A ComfyUI's services (it makes its secret on first use)."""
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


def printed_secret(config_dir: Path, capsys) -> tuple[str, str]:
    """What `webhook-secret` prints: (the secret, its notes)."""
    assert cli.main(["webhook-secret", "--config-dir", str(config_dir)]) == 0
    out, err = capsys.readouterr()
    return out.strip(), err


def store_texts(root: Path) -> list[str]:
    return [p.read_text(errors="replace") for p in root.rglob("*") if p.is_file()]


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
        assert receiver.received.wait(120)
        held = hook(svc)  # the first attempt is still open: the record already counts it
        svc.webhooks.drain(0)
    assert held["state"] == "sending" and held["attempts"] == 1
    final(svc)  # the receiver gone, the delivery ends


def test_a_corrupt_secret_fails_the_delivery_with_the_reason_never_left_sending(tmp_path):
    svc = services(tmp_path, retry=2)
    for path in (tmp_path / "config" / SECRET_FILE, tmp_path / "store" / LEGACY):  # wherever it is kept
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{not json")
        path.chmod(0o600)
    with WebhookReceiver() as receiver:
        end_run(svc, receiver.url, checked=False)  # the secret broke after the run was made
        done = final(svc)
    assert done["state"] == "failed" and done["attempts"] >= 1
    assert SECRET_FILE in done["last_error"] and "whsec_" in done["last_error"]
    assert not receiver.received  # nothing unsigned went out


def test_a_secret_fixed_during_the_retries_is_used(tmp_path):
    svc = services(tmp_path, retry=120)
    path = tmp_path / "config" / SECRET_FILE
    for bad in (path, tmp_path / "store" / LEGACY):
        bad.parent.mkdir(parents=True, exist_ok=True)
        bad.write_text("{not json")
        bad.chmod(0o600)
    with WebhookReceiver() as receiver:
        end_run(svc, receiver.url, checked=False)  # the secret broke after the run was made
        wait_for(lambda: hook(svc).get("last_error"), 120, "a failed attempt recorded")
        path.write_text(GOOD_SECRET + "\n")  # the designer fixes it: the next attempt signs with it
        done = final(svc)
    assert done["state"] == "delivered", done
    headers, body, _ = receiver.received[0]
    standardwebhooks.Webhook(GOOD_SECRET).verify(body, headers)


# --- point 5: forgery and replay ------------------------------------------------------------------------------

def test_deliveries_verify_with_the_stock_verifier_and_the_secret_is_nowhere_in_the_store(tmp_path, capsys):
    svc = services(tmp_path)
    with WebhookReceiver() as receiver:
        end_run(svc, receiver.url)
        assert final(svc)["state"] == "delivered"
    secret, _ = printed_secret(tmp_path / "config", capsys)
    headers, body, _ = receiver.received[0]
    assert standardwebhooks.Webhook(secret).verify(body, headers)["execution"]["id"] == RUN_ID
    assert headers[HEADER_ID] == RUN_ID
    # Whoever reads the store (every artist, an endpoint's role) finds no secret there to sign with.
    assert not any(secret in text for text in store_texts(tmp_path / "store"))
    assert not (tmp_path / "store" / LEGACY).exists()
    if os.name == "posix":  # the process's own file, its owner's only
        assert stat.S_IMODE((tmp_path / "config" / SECRET_FILE).stat().st_mode) == 0o600


def test_a_captured_delivery_resent_under_another_id_does_not_verify(tmp_path, capsys):
    svc = services(tmp_path)
    with WebhookReceiver() as receiver:
        end_run(svc, receiver.url)
        assert final(svc)["state"] == "delivered"
    secret, _ = printed_secret(tmp_path / "config", capsys)
    headers, body, _ = receiver.received[0]
    assert verify(secret, headers, body)
    replayed = {**headers, HEADER_ID: "20260101T000000000000-99999999"}  # a new id: the de-duplication misses it
    assert not verify(secret, replayed, body)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(body, replayed)


def test_the_stores_old_secret_is_not_used_and_the_cli_deletes_it(tmp_path, capsys):
    svc = services(tmp_path)
    old = "ab" * 32
    svc.store.create(LEGACY, json.dumps({"secret": old}).encode())  # what older versions made, every reader's
    with WebhookReceiver() as receiver:
        end_run(svc, receiver.url)
        assert final(svc)["state"] == "delivered"
    headers, body, _ = receiver.received[0]
    assert not verify(old, headers, body)
    secret, note = printed_secret(tmp_path / "config", capsys)
    assert secret != old and verify(secret, headers, body)
    assert not svc.store.exists(LEGACY) and f"deleted {LEGACY}" in note and "stop accepting the old one" in note


def test_a_gateway_given_no_secret_refuses_a_webhook_url_before_anything_is_spent(tmp_path):
    folder = tmp_path / "gateway-config"
    ctx = GatewayContext(configure(folder, tmp_path, token="t" * 32), folder, "127.0.0.1")
    with pytest.raises(BadRequest) as refused:
        ctx.services.webhooks.check("http://127.0.0.1:9/hook")
    assert refused.value.code == "webhook_secret_unavailable"
    assert "COMFYUI_SAGEMAKER_WEBHOOK_SECRET" in refused.value.message
    assert not (folder / SECRET_FILE).exists()  # a replica never makes its own
