"""An endpoint's answer is input too: output items with a malformed digest or name, outputs of the wrong
shape, or a blob whose bytes do not match the digest it is stored under fail the run with a reason, and
nothing of them reaches /view. The 'worker' here is a stub on 127.0.0.1 that answers like a worker would
if it were broken or hostile, registered as a local endpoint of the session's ComfyUI."""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from comfyui_sagemaker.local.folder_store import FolderStore
from harness.envs import publish_environment, wait_execution

pytestmark = pytest.mark.comfyui

PROMPT = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1, "color": 3}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "hostile"}},
}


class HostileWorker:
    """Answers every invocation with the NDJSON lines set in `lines`."""

    def __init__(self):
        self.lines: list[dict] = []
        worker = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = b"".join(json.dumps(line).encode() + b"\n" for line in worker.lines)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def hostile(comfyui):
    """An environment whose local endpoint is the stub (a placeholder process stands for its pid)."""
    client = comfyui.client()
    _, env, _ = publish_environment(client, PROMPT)
    stub = HostileWorker()
    placeholder = subprocess.Popen(["sleep", "600"], start_new_session=True)
    # Reaped the moment it ends: a zombie would look alive to the endpoint's stop, which then waits 20 s.
    threading.Thread(target=placeholder.wait, daemon=True).start()
    folder = comfyui.user_dir / "__sagemaker" / "endpoints" / env.lower()
    folder.mkdir(parents=True)
    (folder / "state.json").write_text(json.dumps({
        "name": env, "kind": "local", "state": "InService", "environment": env, "version": 1, "url": stub.url,
        "pid": placeholder.pid, "token": "t", "reason": None, "created_at": "x", "updated_at": "x"}))
    try:
        yield client, env, stub, FolderStore(comfyui.user_dir / "__sagemaker" / "store")
    finally:
        client.delete(f"/sagemaker/endpoints/{env}")
        placeholder.kill()
        placeholder.wait()
        stub.httpd.shutdown()


def run(client, env, stub, lines) -> dict:
    stub.lines = lines
    r = client.post("/sagemaker/executions", json={"prompt": PROMPT, "environment": env,
                                                   "client_id": uuid.uuid4().hex})
    assert r.status_code == 202, r.text
    return wait_execution(client, r.json()["execution_id"])


def result(outputs) -> dict:
    return {"type": "result", "data": {"status": "succeeded", "outputs": outputs}}


@pytest.mark.parametrize("item, words", [
    ({"filename": "x.png", "sha256": "../../../../config", "type": "output"}, "malformed digest"),
    ({"filename": "x.png", "sha256": "A" * 64, "type": "output"}, "malformed digest"),
    ({"filename": "x.png", "sha256": 5, "type": "output"}, "malformed digest"),
    ({"filename": ["x"], "sha256": "0" * 64, "type": "output"}, "malformed file name"),
    ({"filename": "..", "sha256": "0" * 64, "type": "output"}, "malformed file name"),
])
def test_a_malformed_output_item_fails_the_run_with_a_reason(hostile, item, words):
    client, env, stub, _ = hostile
    for lines in ([result({"2": {"images": [item]}})],  # in the final result
                  [{"type": "executed", "data": {"node": "2", "output": {"images": [item]}}},  # streamed first
                   result({})]):
        record = run(client, env, stub, lines)
        assert record["state"] == "failed" and record["error"]["code"] == "bad_output", record
        assert words in record["error"]["message"]


@pytest.mark.parametrize("outputs", ["nonsense", {"2": "images"}, {"2": ["x"]}])
def test_outputs_of_the_wrong_shape_fail_the_run(hostile, outputs):
    client, env, stub, _ = hostile
    record = run(client, env, stub, [result(outputs)])
    assert record["state"] == "failed" and record["error"]["code"] == "bad_output", record


def test_a_tampered_blob_is_not_served_under_the_digest_it_claims(hostile, comfyui):
    client, env, stub, store = hostile
    honest = b"the image the worker made"
    digest = hashlib.sha256(honest).hexdigest()
    store.put(f"blobs/sha256/{digest}", b"something else, written by whoever can write the store")
    name = f"t{uuid.uuid4().hex[:8]}.png"
    record = run(client, env, stub, [result({"2": {"images": [{"filename": name, "sha256": digest,
                                                                "type": "output"}]}})])
    assert record["state"] == "failed" and "do not match" in record["error"]["message"], record
    assert not list((comfyui.output_dir / "sagemaker").glob(f"*/{name}"))
    assert not list((comfyui.output_dir / "sagemaker").glob(f"*/.{name}.*"))
