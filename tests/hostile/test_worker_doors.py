"""The worker's doors, tried as an attacker and a fault would: a browser page's cross-origin POST, no or
a wrong secret, bodies at and over the limit, bodies that are not JSON or nest too deep, and a killed
worker whose ComfyUI must not outlive it. All traffic stays on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import uuid
from pathlib import Path

import aiohttp
import psutil
import pytest
import requests
from harness.http_server import FileServer
from harness.waiting import wait_for
from harness.worker import WorkerProcess

pytestmark = pytest.mark.comfyui

LIMIT = 6 * 1024 * 1024  # SageMaker's real-time payload limit, the worker's default
COMFYUI_LINE = re.compile(r"comfyui( \S+)? \| ")  # how the worker's log carries its ComfyUI's output
PROMPT = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": 7}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "doors"}},
}


@pytest.fixture(scope="module")
def manifest_uri(worker_environment):
    return worker_environment[1]


@pytest.fixture(scope="module")
def worker(shared_worker):
    """The session's worker (tests/conftest.py), which has a secret, as local endpoints' workers do."""
    return shared_worker.take()


def body_of(size: int) -> bytes:
    """A valid invocation of exactly `size` bytes (padded inside a string the worker ignores)."""
    base = json.dumps({"execution_id": "", "prompt": PROMPT, "padding": ""}).encode()
    return base[:-2] + b"x" * (size - len(base)) + base[-2:]


def test_a_cross_origin_page_cannot_run_a_prompt(worker):
    # What a web page can send without a preflight: a text/plain POST, which the browser marks with Origin.
    body = json.dumps({"prompt": PROMPT})
    for headers in ({"Origin": "http://evil.example", "Content-Type": "text/plain"},
                    {**worker.headers, "Origin": "http://evil.example", "Content-Type": "text/plain"},
                    {"Origin": "null"}):
        r = requests.post(worker.url + "/invocations", data=body, headers=headers, timeout=30)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text


def test_no_or_a_wrong_secret_is_refused_and_ping_stays_open(worker):
    for headers in ({}, {"X-Worker-Token": "guess"}, {"X-Worker-Token": worker.token + "x"}):
        r = requests.post(worker.url + "/invocations", json={"prompt": PROMPT}, headers=headers, timeout=30)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
        assert requests.get(worker.url + "/status", headers=headers, timeout=30).status_code == 403
    assert worker.ping() == 200
    assert worker.invoke({"execution_id": "", "prompt": PROMPT}).json()["status"] == "succeeded"


@pytest.mark.parametrize("size", [600 * 1024, LIMIT], ids=["600KB", "at-limit"])
def test_large_bodies_up_to_the_limit_are_read_whole(worker, size):
    r = requests.post(worker.url + "/invocations", data=body_of(size), timeout=120,
                      headers={**worker.headers, "Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text[:500]


def test_over_the_limit_is_413(worker):
    r = requests.post(worker.url + "/invocations", data=body_of(LIMIT + 1), timeout=120,
                      headers={**worker.headers, "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


def test_a_ten_thousand_node_prompt_is_parsed_and_run(worker):
    prompt = {str(i): {"class_type": "EmptyImage", "inputs": {"width": 1, "height": 1, "batch_size": 1,
                                                               "color": i}} for i in range(3, 10_001)}
    prompt.update(PROMPT)
    assert len(prompt) == 10_000
    r = worker.invoke({"execution_id": "", "prompt": prompt}, timeout=300)
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text[:500]


@pytest.mark.parametrize("data", [b"{not json", b"[" * 5000 + b"]" * 5000, "\u00e9t\u00e9".encode("latin-1"),
                                  b""], ids=["broken", "nested-5000", "not-utf8", "empty"])
def test_bodies_that_are_not_json_are_400_with_one_log_line(worker, data):
    before = worker.log_path.read_text(errors="replace").count("\n")
    agent = f"doors-{uuid.uuid4().hex}"  # names this request's access line
    r = requests.post(worker.url + "/invocations", data=data, headers={**worker.headers, "User-Agent": agent},
                      timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request", r.text
    # An access line is written after its answer is sent: wait for ours, the last line this request makes (so
    # the next case starts after it). Another request's late access line, or a line the worker relays from its
    # ComfyUI, may land in this window: neither is this request's.
    wait_for(lambda: agent in worker.log_path.read_text(errors="replace"), what="this request's access line")
    new = worker.log_path.read_text(errors="replace").splitlines()[before:]
    ours = [line for line in new if not COMFYUI_LINE.match(line)
            and ('"POST /invocations HTTP/1.1"' not in line or agent in line)]
    assert len(ours) == 1 and agent in ours[0] and not any("Traceback" in line for line in new), new


def test_a_killed_worker_takes_its_comfyui_with_it(manifest_uri, tmp_path):
    w = WorkerProcess(manifest_uri, tmp_path / "killed", token="t").start()
    try:
        assert w.wait_state()["state"] == "ready", w.log()[-3000:]
        children = psutil.Process(w.proc.pid).children()
        assert len(children) == 1 and "main.py" in " ".join(children[0].cmdline())
        os.kill(w.proc.pid, signal.SIGKILL)  # the worker only, not its process group
        wait_for(lambda: not children[0].is_running() or children[0].status() == psutil.STATUS_ZOMBIE,
                 what="the worker's ComfyUI to end with it")
    finally:
        w.stop()


# The worker's own ComfyUI (issue 25, point 3): it listens on a loopback port, and took POST /prompt from
# anyone on the machine, also under another site's Host or Origin (a DNS-rebinding page): prompts ran on
# the endpoint and jumped its queue. Now only its worker, which holds its secret, comes in.

SECRET_HEADER = "X-Worker-ComfyUI"


def inner_comfyui(worker: WorkerProcess) -> tuple[str, str]:
    """(url, secret) of the worker's ComfyUI, read as its owner (the same user) can."""
    child = next(c for c in psutil.Process(worker.proc.pid).children() if "main.py" in " ".join(c.cmdline()))
    cmd = child.cmdline()
    return f"http://127.0.0.1:{cmd[cmd.index('--port') + 1]}", child.environ().get("SM_WORKER_COMFYUI_SECRET", "")


def test_the_workers_own_comfyui_serves_only_its_worker(worker):
    url, secret = inner_comfyui(worker)
    own = {SECRET_HEADER: secret}
    intruder = {"prompt": {**PROMPT, "2": {**PROMPT["2"], "inputs": {**PROMPT["2"]["inputs"],
                                                                     "filename_prefix": "intruder"}}},
                "client_id": "intruder"}
    for headers in ({}, {SECRET_HEADER: "guess"}, {SECRET_HEADER: secret + "x"},
                    {**own, "Host": f"rebound.example:{url.rsplit(':', 1)[1]}"},  # a DNS-rebinding page
                    {**own, "Origin": "http://evil.example"}, {**own, "Origin": url}):
        r = requests.post(url + "/prompt", json=intruder, headers=headers, timeout=30)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (headers, r.text[:300])
    # ComfyUI's own routes and its websocket, reads too.
    for method, path in (("GET", "/system_stats"), ("GET", "/queue"), ("GET", "/history"), ("GET", "/object_info"),
                         ("POST", "/interrupt"), ("POST", "/queue"), ("GET", "/"), ("GET", "/api/prompt")):
        r = requests.request(method, url + path, json={} if method == "POST" else None, timeout=30)
        assert r.status_code == 403, (method, path, r.status_code)
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    with requests.get(url + "/ws?clientId=intruder", headers=upgrade, stream=True, timeout=30) as ws:
        assert ws.status_code == 403
    # Runs through the worker still work, and nothing of the intruder's ran before them.
    assert worker.invoke({"execution_id": "", "prompt": PROMPT}).json()["status"] == "succeeded"
    history = requests.get(url + "/history", headers=own, timeout=30).json()
    assert history and not any(entry["prompt"][3].get("client_id") == "intruder" for entry in history.values())


def test_a_comfyui_that_answers_without_the_secret_is_not_used(tmp_path):
    """Fail safe: if the extension's door is not in front of the ComfyUI (it did not load), the worker
    does not take that ComfyUI for ready."""
    from comfyui_sagemaker.worker.comfy import ComfyProcess, DoorOpen

    async def check(url: str) -> None:
        comfy = ComfyProcess(Path(tmp_path), Path(tmp_path), [], [], tmp_path / "log")
        comfy.url, comfy.secret = url, "s"
        async with aiohttp.ClientSession() as session:
            await comfy.check_door(session)

    with FileServer({"/system_stats": b"{}"}) as open_door:
        with pytest.raises(DoorOpen, match="answered 200 to a request without the worker's secret"):
            asyncio.run(check(open_door.url))
