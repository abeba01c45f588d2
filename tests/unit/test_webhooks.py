"""Webhooks (core/webhooks.py) on a folder store, delivered over HTTP to a receiver on 127.0.0.1: the URL
check, the signature a receiver verifies (Standard Webhooks: the stock `standardwebhooks` verifier too),
retries after a 500 and a receiver that never answers, and the delivery state on the record; where the
secret lives (core/webhook_secret.py); idempotency keys (core/v2/idempotency.py) on the same store."""

from __future__ import annotations

import os
import stat
import time

import pytest
import standardwebhooks
from comfyui_sagemaker.core.execution_records import ExecutionRecords
from comfyui_sagemaker.core.v2.idempotency import (
    Claim,
    Idempotency,
    IdempotencyConflict,
    IdempotencyKeyInvalid,
    IdempotencyKeyReuse,
    Replay,
    fingerprint,
)
from comfyui_sagemaker.core.webhook_secret import ENV, FILE, WebhookSecret, WebhookSecretUnavailable
from comfyui_sagemaker.core.webhook_signing import keys, new_secret, sign
from comfyui_sagemaker.core.webhooks import (
    HEADER_ID,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    WebhookRefused,
    Webhooks,
    pending,
    verify,
)
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.gateway import WebhookReceiver

RUN_ID = "20260101T000000000000-0123abcd"


@pytest.fixture
def store(tmp_path):
    return FolderStore(tmp_path / "store")


def hooks(store, retry=30.0, timeout=30.0, allowed=("127.0.0.1",), secret=None) -> Webhooks:
    secret = secret or WebhookSecret(store.root.parent / "config", environ={}, make=True)
    return Webhooks(store, ExecutionRecords(store), lambda r: {"type": "execution.ended", "execution": r}, secret,
                    allowed_hosts=lambda: allowed, retry_seconds=lambda: retry, timeout=lambda: timeout,
                    sleep=lambda s: time.sleep(min(s, 0.05)))


def ended_run(store, url) -> dict:
    record = {"id": RUN_ID, "state": "succeeded", "owner": {"instance": "abc", "name": "t"}, "template": None,
              "created_at": "2026-01-01T00:00:00Z", "webhook": pending(url)}
    ExecutionRecords(store).create(record)
    return record


def delivery(store, states=("delivered", "failed"), timeout=120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        hook = ExecutionRecords(store).read(RUN_ID)[0]["webhook"]
        if hook["state"] in states:
            return hook
        assert time.monotonic() < deadline, hook
        time.sleep(0.02)


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:9/x",
                                 "http://10.1.2.3/hook", "ftp://example.com/x", "http://[::1]/x", ""])
def test_urls_inside_the_network_are_refused_unless_allowed(store, url):
    with pytest.raises(WebhookRefused) as err:
        hooks(store, allowed=()).check(url)
    assert err.value.code == "webhook_refused"
    if "169.254" in url:
        assert "webhook_allowed_hosts" in err.value.message and "169.254.169.254" in err.value.message
    assert hooks(store, allowed=("127.0.0.1:9",)).check("http://127.0.0.1:9/x") == "http://127.0.0.1:9/x"


def test_a_run_end_is_signed_retried_after_a_500_and_recorded(store):
    with WebhookReceiver(answers=[500]) as receiver:
        webhooks = hooks(store)
        webhooks.ended(ended_run(store, receiver.url))
        hook = delivery(store)
        receiver.wait(2)
    assert hook["state"] == "delivered" and hook["attempts"] == 2 and hook["last_status"] == 200
    secret = webhooks.secret.text()
    stock = standardwebhooks.Webhook(secret)
    for headers, body, _ in receiver.received:
        assert verify(secret, headers, body) and headers[HEADER_ID] == RUN_ID
        assert stock.verify(body, headers)["execution"]["id"] == RUN_ID  # a receiver's stock verifier agrees
        assert not verify(secret, headers, body + b" ")  # the raw body is what is signed
        assert not verify(new_secret(), headers, body)
    # Every attempt of the one event carries the same id (the receiver de-duplicates on it).
    assert {headers[HEADER_ID] for headers, _, _ in receiver.received} == {RUN_ID}
    headers, body, _ = receiver.received[0]
    stale = int(headers[HEADER_TIMESTAMP]) - 3600  # a replay of an old request, re-signed with its time
    resigned = sign(keys(secret, "test"), RUN_ID, stale, body)
    assert not verify(secret, {**headers, HEADER_TIMESTAMP: str(stale), HEADER_SIGNATURE: resigned}, body)
    assert receiver.bodies()[0]["execution"]["id"] == RUN_ID
    # Once delivered, another end of the same run (a second process noticing it) sends nothing.
    webhooks.ended({"id": RUN_ID, **ExecutionRecords(store).read(RUN_ID)[0]})
    time.sleep(0.2)
    assert len(receiver.received) == 2


def test_a_receiver_that_never_answers_is_given_up_after_the_retry_time(store):
    with WebhookReceiver(answers=["hang"] * 10) as receiver:
        webhooks = hooks(store, retry=2, timeout=0.5)
        webhooks.ended(ended_run(store, receiver.url))
        hook = delivery(store)
    assert hook["state"] == "failed" and hook["attempts"] >= 2
    assert hook["last_status"] is None and "timed out" in hook["last_error"]
    assert webhooks.drain(5) == 0


def test_the_secret_is_this_processs_own_private_file_or_variable(tmp_path):
    folder = tmp_path / "config"
    made = WebhookSecret(folder, environ={}, make=True)
    first = made.text()
    assert first.startswith("whsec_") and len(keys(first, "t")[0]) == 32
    assert stat.S_IMODE((folder / FILE).stat().st_mode) == 0o600  # its owner's only
    assert WebhookSecret(folder, environ={}).text() == first  # read again, not made again
    assert made.rotate() != first and made.text() != first
    # A gateway is given its secret; it never makes one.
    with pytest.raises(WebhookSecretUnavailable, match=ENV):
        WebhookSecret(tmp_path / "gateway", environ={}).keys()
    given = new_secret()
    assert WebhookSecret(tmp_path / "gateway", environ={ENV: given}).text() == given
    with pytest.raises(WebhookSecretUnavailable, match="change it there"):
        WebhookSecret(folder, environ={ENV: given}).rotate()
    # Several secrets during a rotation: each signs.
    both = WebhookSecret(None, environ={ENV: f"{given} {first}"}).keys()
    assert len(sign(both, RUN_ID, 1, b"{}").split()) == 2


@pytest.mark.skipif(os.name != "posix", reason="file modes")
def test_a_secret_file_others_may_read_is_not_used(tmp_path):
    folder = tmp_path / "config"
    WebhookSecret(folder, environ={}, make=True).text()
    (folder / FILE).chmod(0o644)
    with pytest.raises(WebhookSecretUnavailable, match="may be read by others"):
        WebhookSecret(folder, environ={}, make=True).keys()


def test_idempotency_replays_refuses_another_body_and_frees_a_failed_key(store):
    idem = Idempotency(store)
    body = {"workflow": {"1": {"class_type": "X", "inputs": {}}}}
    claim = idem.begin("jobs.e.me", "key-1", fingerprint(body))
    assert isinstance(claim, Claim)
    with pytest.raises(IdempotencyConflict):  # the first request is still being handled
        idem.begin("jobs.e.me", "key-1", fingerprint(body))
    idem.finish(claim, 201, {"id": "job-1"})
    assert idem.begin("jobs.e.me", "key-1", fingerprint(body)) == Replay(201, {"id": "job-1"})
    with pytest.raises(IdempotencyKeyReuse):
        idem.begin("jobs.e.me", "key-1", fingerprint({**body, "metadata": {"a": "b"}}))
    failed = idem.begin("jobs.e.me", "key-2", fingerprint(body))
    idem.abandon(failed)
    assert isinstance(idem.begin("jobs.e.me", "key-2", fingerprint(body)), Claim)  # runs anew
    assert isinstance(idem.begin("jobs.e.other", "key-1", fingerprint(body)), Claim)  # scopes are apart
    with pytest.raises(IdempotencyKeyInvalid):
        idem.begin("jobs.e.me", "bad\nkey", fingerprint(body))
