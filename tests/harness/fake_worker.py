"""A stand-in for the worker a local endpoint starts (local/endpoints.py), and the endpoint's change events.

The worker is a few lines of http.server run as the real one is (`python <folder> worker serve`, on
SAGEMAKER_BIND_TO_PORT, answering only its WORKER_TOKEN). It does what the manifest it serves says under
"fake": `fail` (its /status says failed, with that reason), `ready_when` (starting until that file exists),
`idle_since` (reported in /status, as the real worker's idle clock). A run's prompt may name `arrived` (written
with the worker's pid when the run reaches it) and `wait` (held until that file exists); a cancel is appended
to $FAKE_CANCELS. Orderings through files, never timings."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

SOURCE = '''
import json, os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

uri = os.environ["SAGEMAKER_MANIFEST_URI"]
manifest = json.loads(Path(unquote(urlparse(uri).path)).read_text())
fake = manifest.get("fake") or {}


def until(path):
    deadline = time.monotonic() + 600
    while path and not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)


class Worker(BaseHTTPRequestHandler):
    def allowed(self):
        if self.headers.get("X-Worker-Token") == os.environ["WORKER_TOKEN"]:
            return True
        self.answer(403, {"error": {"code": "forbidden", "message": "wrong token"}})
        return False

    def answer(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if not self.allowed():
            return
        if fake.get("fail"):
            self.answer(200, {"state": "failed", "reason": fake["fail"]})
        elif fake.get("ready_when") and not os.path.exists(fake["ready_when"]):
            self.answer(200, {"state": "starting"})
        else:
            self.answer(200, {"state": "ready", **({"idle_since": fake["idle_since"]} if "idle_since" in fake else {})})

    def do_POST(self):
        if not self.allowed():
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body.get("action") == "cancel":
            with open(os.environ["FAKE_CANCELS"], "a") as f:
                f.write(json.dumps({"execution_id": body.get("execution_id"), "version": manifest["version"]}) + "\\n")
            self.answer(200, {})
            return
        prompt = body["prompt"]
        if prompt.get("arrived"):
            Path(prompt["arrived"]).write_text(str(os.getpid()))
        until(prompt.get("wait"))
        self.send_response(200)
        self.end_headers()
        result = {"execution_id": body.get("execution_id"), "status": "succeeded",
                  "outputs": {"version": manifest["version"], "pid": os.getpid()}}
        for line in ({"type": "execution_start", "data": {}}, {"type": "result", "data": result}):
            self.wfile.write(json.dumps(line).encode() + b"\\n")
            self.wfile.flush()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["SAGEMAKER_BIND_TO_PORT"])), Worker)
print("worker ready", flush=True)
try:
    server.serve_forever()
except KeyboardInterrupt:
    pass
'''


def install(tmp: Path) -> Path:
    """The stand-in's folder (a runnable package: its __main__.py) under `tmp`."""
    folder = tmp / "fake-worker"
    folder.mkdir()
    (folder / "__main__.py").write_text(SOURCE)
    return folder


class Changes:
    """The endpoint's change events (its on_change), waited on by what they say, never on time."""

    def __init__(self) -> None:
        self.seen: list[dict] = []
        self.cond = threading.Condition()

    def __call__(self, view: dict) -> None:
        with self.cond:
            self.seen.append(view)
            self.cond.notify_all()

    def wait(self, check: str | Callable[[dict], bool], what: str = "", timeout: float = 60) -> dict:
        """The first view that passes `check` (a state's name, or a test of the view)."""
        test = (lambda v: v["state"] == check) if isinstance(check, str) else check
        with self.cond:
            assert self.cond.wait_for(lambda: any(test(v) for v in self.seen), timeout), (what or check, self.seen)
            return next(v for v in self.seen if test(v))
