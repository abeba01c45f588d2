"""The gateway as users run it: `python <extension folder> gateway ...` in its own process, on a free
127.0.0.1 port, configured by a config folder and/or COMFYUI_SAGEMAKER_* variables; and a webhook receiver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from .comfyui import ROOT, free_port

TOKEN = "gateway-test-token"


class Gateway:
    def __init__(self, log_dir: Path, env: dict[str, str] | None = None, config_dir: Path | None = None,
                 drain_seconds: float = 20, token: str = TOKEN, python: str = sys.executable,
                 extension: Path = ROOT, cwd: Path | None = None, args: list[str] | None = None):
        """`python <extension> gateway` run in `cwd` (as installed: a ComfyUI's Python, from its folder,
        `custom_nodes/<folder>`)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = token
        self.env = {"COMFYUI_SAGEMAKER_TOKEN": token, **(env or {})}
        self.config_dir = config_dir
        self.drain_seconds = drain_seconds
        self.python, self.extension = python, extension
        self.cwd = cwd
        self.args = list(args or [])
        self.log_path = Path(log_dir) / f"gateway-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        cmd = [self.python, str(self.extension), "gateway", "--port", str(self.port), "--drain-seconds",
               str(self.drain_seconds), *self.args]
        return cmd + (["--config-dir", str(self.config_dir)] if self.config_dir else [])

    def start(self, timeout: float = 120) -> Gateway:
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.command(), env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"},
                                     stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd or self.log_path.parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the gateway exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                if requests.get(self.url + "/health", timeout=1).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the gateway did not answer within {timeout} s:\n{self.log()[-3000:]}")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.url + path, headers={**self.headers(), **kw.pop("headers", {})},
                            timeout=kw.pop("timeout", 30), **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return requests.post(self.url + path, headers={**self.headers(), **kw.pop("headers", {})},
                             timeout=kw.pop("timeout", 30), **kw)

    def terminate(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.drain_seconds + 15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class WebhookReceiver:
    """A webhook receiver on 127.0.0.1: records each POST (headers, raw body); answers each with the next
    status of `answers` (then 200), or never answers ("hang") until it is stopped."""

    def __init__(self, answers: list[int | str] | None = None):
        self.answers = list(answers or [])
        self.received: list[tuple[dict[str, str], bytes, float]] = []
        self.released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append((dict(self.headers.items()), body, time.monotonic()))
                answer = receiver.answers.pop(0) if receiver.answers else 200
                if answer == "hang":
                    receiver.released.wait(300)
                    return
                self.send_response(int(answer))
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def bodies(self) -> list[dict]:
        return [json.loads(body) for _, body, _ in self.received]

    def wait(self, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.received) >= count, f"{len(self.received)} webhook(s) received, {count} expected"
