"""Hostile input for webhooks (issue 25, point 8), through the composition root (services.py) on a folder
store: a receiver that trickles its answer one byte at a time is given up at the attempt's timeout, which is
for the whole attempt (connect, send, the whole answer), not per read.
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
from harness.http_server import TrickleServer
from harness.waiting import wait_for

RUN_ID = "20260101T000000000000-0123abcd"


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
