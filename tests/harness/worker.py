"""A real worker process for the tests, started as local endpoints start it (the CLI's `worker serve`
run through the extension's folder)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from .comfyui import ROOT, comfyui_dir, free_port


class WorkerProcess:
    def __init__(self, manifest_uri: str, root: Path, extra_env: dict[str, str] | None = None,
                 token: str | None = None):
        self.token = token
        self.headers = {"X-Worker-Token": token} if token else {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.root = root
        self.log_path = root / "worker.log"
        self.env = {
            **os.environ,
            "SAGEMAKER_MANIFEST_URI": manifest_uri,
            "SAGEMAKER_BIND_TO_PORT": str(self.port),
            "WORKER_HOST": "127.0.0.1",
            "WORKER_CACHE_DIR": str(root / "cache"),
            "WORKER_BASE_DIR": str(root / "base"),
            "COMFYUI_DIR": str(comfyui_dir()),
            "WORKER_COMFYUI_ARGS": "--cpu",
            "WORKER_INSTALL_PACKAGES": "0",
            **({"WORKER_TOKEN": token} if token else {}),
            **(extra_env or {}),
        }
        self.proc: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        # Its own session, as local endpoints do: stop() ends the worker and its ComfyUI together.
        self.proc = subprocess.Popen([sys.executable, str(ROOT), "worker", "serve"], env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def status(self) -> dict:
        return requests.get(self.url + "/status", timeout=30, headers=self.headers).json()

    def wait_state(self, wanted: tuple[str, ...] = ("ready", "failed"), timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                status = self.status()
                if status["state"] in wanted:
                    return status
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(f"worker not {wanted} in {timeout} s:\n{self.log()[-3000:]}")

    def ping(self) -> int:
        return requests.get(self.url + "/ping", timeout=30).status_code

    def invoke(self, body: dict, stream: bool = False, timeout: float = 300) -> requests.Response:
        headers = {**self.headers, **({"Accept": "application/x-ndjson"} if stream else {})}
        return requests.post(self.url + "/invocations", json=body, headers=headers, timeout=timeout, stream=stream)

    @staticmethod
    def lines(response: requests.Response) -> list[dict]:
        return [json.loads(line) for line in response.iter_lines() if line]

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:  # whatever of its session is left (a ComfyUI the worker did not stop)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        self.proc.wait()

    def log(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        comfy = self.root / "base" / "comfyui.log"
        return text + ("\n--- comfyui ---\n" + comfy.read_text(errors="replace") if comfy.exists() else "")


class SharedWorker:
    """One worker process shared by the modules that test the worker program itself (a start costs a ComfyUI
    start). A module takes it with `take()`: running, ready and idle; if a run is still in it (a module that
    failed while holding one) or it died, a fresh one replaces it, so no module waits on another's leftovers."""

    CANCEL_HOLD = 15.0  # seconds a cancel for an id it does not have is kept
    SETTINGS = {"WORKER_CANCEL_POLL": "0.1", "WORKER_CANCEL_HOLD": str(CANCEL_HOLD)}  # cancel markers: every 0.1 s

    def __init__(self, manifest_uri: str, roots, token: str):
        self.manifest_uri, self.roots, self.token = manifest_uri, roots, token
        self.worker: WorkerProcess | None = None

    def take(self, idle_within: float = 30) -> WorkerProcess:
        if self.worker is not None and not self._idle(idle_within):
            self.worker.stop()
            self.worker = None
        if self.worker is None:
            self.worker = WorkerProcess(self.manifest_uri, self.roots(), self.SETTINGS, token=self.token).start()
            status = self.worker.wait_state()
            assert status["state"] == "ready", (status, self.worker.log()[-3000:])
        return self.worker

    def _idle(self, within: float) -> bool:
        deadline = time.monotonic() + within
        while self.worker.proc.poll() is None:
            try:
                status = self.worker.status()
                if status["state"] == "ready" and not status["queue"] and \
                        all(c["execution"] is None for c in status["comfyuis"]):
                    return True
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
