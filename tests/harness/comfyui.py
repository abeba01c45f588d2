"""A real ComfyUI for the tests: started headless on the CPU, on a free 127.0.0.1
port, with its own base/input/output/models/user folders and this extension
linked into custom_nodes; and a small client for its HTTP and websocket API."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests
import websocket

ROOT = Path(__file__).resolve().parents[2]
EXTENSION_FOLDER = "comfyui-sagemaker"


def comfyui_dir() -> Path:
    """COMFYUI_DIR, else the pinned ComfyUI that `./dev test` installs; fail loudly if neither."""
    path = Path(os.environ.get("COMFYUI_DIR") or ROOT / ".dev" / "ComfyUI")
    if not (path / "main.py").exists():
        raise RuntimeError(
            f"no ComfyUI at {path}: run the tests with `./dev test` (it installs one) "
            "or point COMFYUI_DIR at a ComfyUI checkout"
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyUI:
    """One ComfyUI process. `start()` returns when /system_stats answers."""

    def __init__(self, base: Path, env: dict[str, str] | None = None, extra_args: list[str] | None = None,
                 python: str | None = None):
        self.base = base
        self.python = python or sys.executable
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env or {}
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen | None = None
        self.log_path = base / "comfyui.log"

    @property
    def input_dir(self) -> Path:
        return self.base / "input"

    @property
    def output_dir(self) -> Path:
        return self.base / "output"

    @property
    def user_dir(self) -> Path:
        return self.base / "user"

    def prepare(self) -> None:
        for sub in ("input", "output", "temp", "models", "custom_nodes", "user/default"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        link = self.base / "custom_nodes" / EXTENSION_FOLDER
        if not link.exists():
            link.symlink_to(ROOT, target_is_directory=True)
        # A fresh user folder opens a templates dialog whose overlay blocks clicks.
        settings = self.user_dir / "default" / "comfy.settings.json"
        if not settings.exists():
            settings.write_text(json.dumps({"Comfy.TutorialCompleted": True}))

    def start(self, timeout: float = 300) -> ComfyUI:
        self.prepare()
        comfy = comfyui_dir()
        cmd = [
            self.python, str(comfy / "main.py"), "--cpu", "--listen", "127.0.0.1",
            "--port", str(self.port), "--disable-auto-launch", "--base-directory", str(self.base),
            "--database-url", "sqlite:///:memory:", "--disable-api-nodes", *self.extra_args,
        ]
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=comfy, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                if requests.get(self.url + "/system_stats", timeout=2).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer within {timeout} s:\n{self.log()[-4000:]}")

    def stop_endpoints(self) -> None:
        """Local endpoints' workers outlive ComfyUI by design (re-adopted on restart): end them."""
        for state in (self.user_dir / "__sagemaker" / "endpoints").glob("*/state.json"):
            try:
                pid = json.loads(state.read_text()).get("pid")
                if pid:
                    os.killpg(pid, signal.SIGKILL)
            except (OSError, ValueError):
                pass

    def stop(self, endpoints: bool = True) -> None:
        if endpoints:
            self.stop_endpoints()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self) -> Client:
        return Client(self.url)


class Client:
    """ComfyUI's API as a test uses it: /prompt, /ws, /history, /view, /upload/image."""

    def __init__(self, url: str, headers: dict[str, str] | None = None):
        self.url = url
        self.headers = headers or {}  # sent on every request and the websocket (a worker's ComfyUI's secret)
        self.http = requests.Session()
        self.http.headers.update(self.headers)

    def get(self, path: str, **kw) -> requests.Response:
        return self.http.get(self.url + path, timeout=kw.pop("timeout", 30), **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return self.http.post(self.url + path, timeout=kw.pop("timeout", 30), **kw)

    def put(self, path: str, **kw) -> requests.Response:
        return self.http.put(self.url + path, timeout=kw.pop("timeout", 30), **kw)

    def delete(self, path: str, **kw) -> requests.Response:
        return self.http.delete(self.url + path, timeout=kw.pop("timeout", 30), **kw)

    def upload_image(self, name: str, data: bytes, subfolder: str = "") -> dict:
        files = {"image": (name, io.BytesIO(data), "image/png")}
        r = self.post("/upload/image", files=files, data={"overwrite": "true", "subfolder": subfolder})
        r.raise_for_status()
        return r.json()

    def websocket(self, client_id: str) -> websocket.WebSocket:
        ws_url = self.url.replace("http://", "ws://") + f"/ws?clientId={client_id}"
        return websocket.create_connection(ws_url, timeout=120, header=[f"{k}: {v}" for k, v in self.headers.items()])

    def queue(self, prompt: dict, client_id: str | None = None) -> str:
        body = {"prompt": prompt, "client_id": client_id or uuid.uuid4().hex}
        r = self.post("/prompt", json=body)
        if not r.ok:
            raise AssertionError(f"/prompt refused: {r.status_code} {r.text}")
        return r.json()["prompt_id"]

    def run(self, prompt: dict, timeout: float = 300) -> tuple[dict, list[dict]]:
        """Queue `prompt`, follow the websocket to its end; return (history entry, events)."""
        client_id = uuid.uuid4().hex
        ws = self.websocket(client_id)
        events: list[dict] = []
        try:
            prompt_id = self.queue(prompt, client_id)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                msg = ws.recv()
                if not isinstance(msg, str):
                    continue  # binary previews
                event = json.loads(msg)
                data = event.get("data", {})
                if event["type"].startswith("sagemaker.") or data.get("prompt_id") not in (None, prompt_id):
                    continue  # the extension's own broadcasts, or another prompt's events
                events.append(event)
                if event["type"] in ("execution_success", "execution_error", "execution_interrupted"):
                    break
            else:
                raise AssertionError(f"prompt {prompt_id} did not finish in {timeout} s: {events}")
        finally:
            ws.close()
        return self.history(prompt_id), events

    def history(self, prompt_id: str, timeout: float = 60) -> dict:
        # /history can lag execution_success a little on the first prompt.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get(f"/history/{prompt_id}").json().get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                return entry
            time.sleep(0.05)
        raise AssertionError(f"no history for {prompt_id}")

    def view(self, filename: str, subfolder: str = "", type: str = "output") -> bytes:
        r = self.get("/view", params={"filename": filename, "subfolder": subfolder, "type": type})
        r.raise_for_status()
        return r.content
