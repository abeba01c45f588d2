"""Every outbound HTTP call has a deadline over the whole exchange, not only per read (issue 25, point 8):
a peer on 127.0.0.1 that answers one byte at a time, each well within any per-read timeout, cannot hold a
model download, a call to a local endpoint's worker, the CLI, or the worker's calls to its own ComfyUI.

A model download legitimately takes hours: its deadline is a stall deadline (64 KiB in every `timeout`
seconds), so a slow but steady server still completes. (Webhooks: test_webhook_signatures_and_deadlines.py.)

Each call runs in a thread the test waits on with a generous deadline: before the fix, it would never end.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from pathlib import Path

import aiohttp
import pytest
from comfyui_sagemaker import cli
from comfyui_sagemaker.core.net import http_deadline
from comfyui_sagemaker.core.net.fetch import DownloadFailed, download
from comfyui_sagemaker.local import endpoint_runs
from comfyui_sagemaker.local.endpoints import LocalEndpoints, WorkerRuntime
from comfyui_sagemaker.worker import comfy as worker_comfy
from comfyui_sagemaker.worker.comfy import ComfyProcess
from harness.http_server import TrickleServer

# Each test waits out a deadline of seconds against a trickling peer: the whole suite runs them, the fast tier does not.
pytestmark = pytest.mark.slow

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"
# Trickled from the first byte of the status line, or after the headers came at once (the body).
TRICKLES = [pytest.param({"answer": b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200}, id="status-line"),
            pytest.param({"head": HEAD, "answer": b" " * 200}, id="body")]


def ends(call, timeout: float = 120):
    """Run `call` in a thread; its result (or exception) once it ends; fails the test if it does not."""
    box: dict = {}

    def run():
        try:
            box["value"] = call()
        except BaseException as err:  # handed to the test
            box["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"still waiting after {timeout} s: no whole-exchange deadline"
    if "error" in box:
        raise box["error"]
    return box["value"]


# --- model downloads: a stall deadline --------------------------------------------------------------------------

@pytest.mark.parametrize("trickle", TRICKLES)
def test_a_download_that_trickles_is_given_up(tmp_path, trickle):
    with TrickleServer(interval=0.1, **trickle) as server:
        with pytest.raises(DownloadFailed) as failed:
            ends(lambda: download(server.url + "/m.safetensors", tmp_path / "m.safetensors", timeout=1,
                                  allowed_hosts=["127.0.0.1"]))
    assert "stalled" in failed.value.message
    assert not (tmp_path / "m.safetensors").exists()


def test_a_slow_but_steady_download_completes(tmp_path):
    body = bytes(range(256)) * 256 * 10  # 640 KiB, in 64 KiB pieces, longer in all than the stall deadline
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    with TrickleServer(head=head, answer=body, pieces=64 << 10, interval=0.25, repeat=False) as server:
        digest = ends(lambda: download(server.url + "/m.bin", tmp_path / "m.bin", timeout=2,
                                       allowed_hosts=["127.0.0.1"]))
    assert digest == hashlib.sha256(body).hexdigest() and (tmp_path / "m.bin").read_bytes() == body


# --- the project's other outbound calls: one whole deadline each ---------------------------------------------------

def local_endpoint(tmp_path: Path, url: str) -> LocalEndpoints:
    endpoints = LocalEndpoints(tmp_path / "state", "file:///nowhere", WorkerRuntime(tmp_path, "", tmp_path))
    folder = endpoints.root / "env"
    folder.mkdir(parents=True)
    (folder / "state.json").write_text(json.dumps({"name": "env", "kind": "local", "state": "InService",
                                                   "url": url, "token": "t", "pid": None}))
    return endpoints


@pytest.mark.parametrize("trickle", TRICKLES)
def test_a_local_endpoints_calls_to_a_trickling_worker_end(tmp_path, monkeypatch, trickle):
    monkeypatch.setattr(endpoint_runs, "CANCEL_TIMEOUT_S", 1.0)
    with TrickleServer(interval=0.1, **trickle) as worker:
        endpoints = local_endpoint(tmp_path, worker.url)
        # best effort: it just returns
        ends(lambda: endpoints.cancel("env", "20260101T000000000000-0123abcd", "a-cancel-token"))
        assert ends(lambda: endpoints._status(worker.url, {})) is None
    assert len(worker.requests) == 2


@pytest.mark.parametrize("trickle", TRICKLES)
def test_the_cli_gives_up_on_a_trickling_comfyui(monkeypatch, capsys, trickle):
    monkeypatch.setattr(cli, "SERVER_TIMEOUT_S", 1.0, raising=False)
    with TrickleServer(interval=0.1, **trickle) as comfyui:
        assert ends(lambda: cli.main(["snapshot", "--url", comfyui.url, "--json"])) == 1
    assert "cannot reach ComfyUI" in capsys.readouterr().err


def test_the_cli_still_reads_a_comfyui_answer(capsys):
    data = json.dumps({"error": {"code": "not_found", "message": "no route"}}).encode()
    head = f"HTTP/1.1 404 Not Found\r\nContent-Length: {len(data)}\r\n\r\n".encode()
    with TrickleServer(head=head + data, answer=b"", repeat=False) as comfyui:
        assert ends(lambda: cli.main(["snapshot", "--url", comfyui.url])) == 1
    assert "error (not_found): no route" in capsys.readouterr().err


def test_the_request_helper_reads_a_whole_answer_in_time():
    with TrickleServer(head=b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", answer=b"", repeat=False) as server:
        assert ends(lambda: http_deadline.request(server.url + "/x", "POST", {"a": 1}, seconds=30)) == (200, b"{}")
    assert server.requests[0][1] == b'{"a": 1}'


@pytest.mark.parametrize("trickle", TRICKLES)
def test_the_workers_calls_to_its_comfyui_end(tmp_path, monkeypatch, trickle):
    monkeypatch.setattr(worker_comfy, "INTERRUPT_TIMEOUT", aiohttp.ClientTimeout(total=1), raising=False)
    monkeypatch.setattr(worker_comfy, "NODE_TYPES_TIMEOUT", aiohttp.ClientTimeout(total=1), raising=False)
    comfy = ComfyProcess(tmp_path, tmp_path, [], [], tmp_path / "comfyui.log")

    async def calls():
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)) as session:
            await comfy.interrupt(session, "p1")  # best effort: it just returns
            with pytest.raises(RuntimeError, match="node types"):
                await comfy.node_types(session)

    with TrickleServer(interval=0.1, **trickle) as server:
        comfy.url = server.url
        ends(lambda: asyncio.run(calls()))
