"""The worker's own headless ComfyUI: started as a subprocess, driven over its HTTP and websocket API."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from ..core.worker_contract import INNER_SECRET_ENV, INNER_SECRET_HEADER, WORKER_COMFYUI_ENV, WorkerEvent

FINAL_EVENTS = ("execution_success", "execution_error", "execution_interrupted")
# Whole-call deadlines for the calls a run's own deadline does not cover (the session sets none: a run's
# websocket lives as long as the run, under the worker's invocation timeout).
NODE_TYPES_TIMEOUT = aiohttp.ClientTimeout(total=300)
INTERRUPT_TIMEOUT = aiohttp.ClientTimeout(total=10)
PREVIEW_EVENT = "sagemaker.preview"  # a sampler preview, relayed by the extension as ComfyUI's binary frame
# ComfyUI's binary websocket frames (protocol.py): a 4-byte event type, then for PREVIEW_IMAGE a 4-byte
# image type (1 JPEG, 2 PNG) and the image.
BINARY_PREVIEW_IMAGE = 1
IMAGE_TYPES = {1: "image/jpeg", 2: "image/png"}


def preview_event(frame: bytes, prompt_id: str, node_id: str | None) -> WorkerEvent | None:
    """A binary preview frame as an event (base64), for the node that was executing; None if not one."""
    if len(frame) < 8 or struct.unpack(">I", frame[:4])[0] != BINARY_PREVIEW_IMAGE:
        return None
    image_type = IMAGE_TYPES.get(struct.unpack(">I", frame[4:8])[0])
    if image_type is None:
        return None
    return {"type": PREVIEW_EVENT, "data": {"prompt_id": prompt_id, "node_id": node_id, "image_type": image_type,
                                            "image": base64.b64encode(frame[8:]).decode()}}


class PromptRejected(Exception):
    """ComfyUI refused the prompt at validation (its /prompt answered 400)."""

    def __init__(self, body: dict):
        super().__init__(json.dumps(body)[:2000])
        self.body = body


def die_with_parent(parent: int) -> None:
    """Run in the child before exec (Linux): the kernel kills it when the worker dies, however the worker
    dies, so a killed worker never leaves its ComfyUI serving (and surviving a redeploy)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the worker died before the line above
        os._exit(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DoorOpen(RuntimeError):
    """The ComfyUI answered a request without its secret: the extension's door is not in front of it."""


class ComfyProcess:
    """One headless ComfyUI. Several share a base directory (models and custom_nodes, materialised once);
    each has its own input, output, temp and user folders under `slot_dir`, so concurrent runs never meet
    on a file name, and a ComfyUI that restarts (it empties its temp folder at start) touches no other's.

    Only the worker may call it: each start gives it a new random secret (in its environment), which the
    extension inside it requires of every request (server_routes/worker_door.py) and which every call here
    sends. A ComfyUI that answers without the secret is not used (`check_door`)."""

    def __init__(self, comfyui_dir: Path, base_dir: Path, extra_args: list[str], extra_pythonpath: list[str],
                 log_path: Path, preview_method: str = "auto", slot_dir: Path | None = None,
                 env: dict[str, str] | None = None, label: str = ""):
        self.comfyui_dir = comfyui_dir
        self.base = base_dir
        self.slot_dir = slot_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_args = extra_args
        self.extra_pythonpath = extra_pythonpath
        self.log_path = log_path
        self.preview_method = preview_method
        self.env = env or {}
        self.prefix = f"comfyui{' ' + label if label else ''} | ".encode()
        self.proc: subprocess.Popen | None = None
        self.secret = ""

    @property
    def headers(self) -> dict[str, str]:
        return {INNER_SECRET_HEADER: self.secret}

    def folder(self, kind: str) -> Path:
        """Where this ComfyUI keeps `input`, `output`, `temp` or `user` files."""
        return (self.slot_dir or self.base) / kind

    def start(self) -> None:
        """Start (or start again, on a new port) this ComfyUI."""
        for sub in ("models", "custom_nodes"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        for kind in ("input", "output", "temp", "user"):
            self.folder(kind).mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.secret = secrets.token_urlsafe(32)  # a new process, a new secret
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        env.update({WORKER_COMFYUI_ENV: "1", INNER_SECRET_ENV: self.secret})
        env.pop("WORKER_TOKEN", None)  # the worker's own door's secret: nothing inside its ComfyUI needs it
        if self.extra_pythonpath:
            env["PYTHONPATH"] = os.pathsep.join([*self.extra_pythonpath, env.get("PYTHONPATH", "")]).strip(os.pathsep)
        folders = []
        if self.slot_dir is not None:
            # --temp-directory D makes ComfyUI use D/temp.
            folders = ["--input-directory", str(self.folder("input")), "--output-directory", str(self.folder("output")),
                       "--temp-directory", str(self.slot_dir), "--user-directory", str(self.folder("user"))]
        cmd = [sys.executable, str(self.comfyui_dir / "main.py"), "--listen", "127.0.0.1", "--port", str(self.port),
               "--disable-auto-launch", "--base-directory", str(self.base), *folders,
               "--database-url", "sqlite:///:memory:", "--disable-api-nodes", "--preview-method", self.preview_method,
               *self.extra_args]
        parent = os.getpid()
        tie = (lambda: die_with_parent(parent)) if sys.platform == "linux" else None
        self.proc = subprocess.Popen(cmd, cwd=self.comfyui_dir, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, preexec_fn=tie)
        threading.Thread(target=self._relay_output, args=(self.proc.stdout,), daemon=True,
                         name="comfyui-output").start()

    def _relay_output(self, stream) -> None:
        """ComfyUI's output goes to the worker's own stdout (on SageMaker that is CloudWatch Logs, where node
        tracebacks and out-of-memory errors must be seen) and to its log file (tests, local debugging)."""
        with open(self.log_path, "ab") as log:
            for line in iter(stream.readline, b""):
                log.write(line)
                log.flush()
                sys.stdout.buffer.write(self.prefix + line)
                sys.stdout.buffer.flush()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def exit_code(self) -> int | None:
        """None while it runs (or before it started)."""
        return self.proc.poll() if self.proc else None

    async def wait_ready(self, session: aiohttp.ClientSession, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with code {self.proc.returncode}")
            if await self.alive(session):
                await self.check_door(session)
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"ComfyUI did not answer within {timeout:.0f} s")

    async def alive(self, session: aiohttp.ClientSession) -> bool:
        try:
            async with session.get(self.url + "/system_stats", headers=self.headers,
                                   timeout=aiohttp.ClientTimeout(total=2)) as r:
                return r.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return False

    async def check_door(self, session: aiohttp.ClientSession) -> None:
        """Fail safe: a ComfyUI that serves a caller without the secret (the extension did not load in it,
        or an older one did) would run anyone's prompts on the endpoint. DoorOpen, and it is not used."""
        async with session.get(self.url + "/system_stats", timeout=aiohttp.ClientTimeout(total=10)) as r:
            if r.status != 403:
                raise DoorOpen(f"ComfyUI answered {r.status} to a request without the worker's secret: the "
                               "comfyui-sagemaker extension's door is not in front of it (see its log)")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def kill(self) -> None:
        """End it at once (SIGKILL): for a ComfyUI stuck in a node that ignores interrupts, whose only state is
        in memory (models stay on disk); the kernel frees its GPU memory with the process."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    async def node_types(self, session: aiohttp.ClientSession) -> set[str]:
        try:
            async with session.get(self.url + "/object_info", headers=self.headers, timeout=NODE_TYPES_TIMEOUT) as r:
                return set(await r.json())
        except asyncio.TimeoutError:
            raise RuntimeError(f"ComfyUI did not list its node types within {NODE_TYPES_TIMEOUT.total:.0f} s") \
                from None

    async def run(self, session: aiohttp.ClientSession, prompt: dict,
                  on_event: Callable[[WorkerEvent], Awaitable[None]],
                  on_submitted: Callable[[str], None] = lambda prompt_id: None) -> tuple[str, dict, dict | None]:
        """Submit `prompt`, relay its events, wait for its end. Returns (final event type, outputs, error)."""
        client_id = uuid.uuid4().hex
        async with session.ws_connect(f"{self.url}/ws?clientId={client_id}", heartbeat=30,
                                      headers=self.headers) as ws:
            async with session.post(self.url + "/prompt", json={"prompt": prompt, "client_id": client_id},
                                    headers=self.headers) as r:
                body = await r.json(content_type=None)
                if r.status != 200:
                    raise PromptRejected(body if isinstance(body, dict) else {"error": body})
            prompt_id = body["prompt_id"]
            on_submitted(prompt_id)
            final, error, executing = None, None, None
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:  # sampler previews: this socket only gets this prompt's
                    preview = preview_event(msg.data, prompt_id, executing)
                    if preview is not None:
                        await on_event(preview)
                    continue
                if msg.type != aiohttp.WSMsgType.TEXT:
                    if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        break
                    continue
                event = json.loads(msg.data)
                data = event.get("data") or {}
                if event.get("type") == "status" or data.get("prompt_id") not in (None, prompt_id):
                    continue
                if event.get("type") == "executing":
                    executing = data.get("node")
                await on_event(event)
                if event.get("type") in FINAL_EVENTS:
                    final = event["type"]
                    if final == "execution_error":
                        error = {"node_id": data.get("node_id"), "node_type": data.get("node_type"),
                                 "message": data.get("exception_message", "").strip(),
                                 "exception_type": data.get("exception_type")}
                    elif final == "execution_interrupted":
                        error = {"node_id": data.get("node_id"), "node_type": data.get("node_type"),
                                 "message": "interrupted"}
                    break
            if final is None:
                raise RuntimeError("ComfyUI closed its websocket before the prompt ended")
        return final, await self.history_outputs(session, prompt_id), error

    async def history_outputs(self, session: aiohttp.ClientSession, prompt_id: str) -> dict:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # /history can lag execution_success a little
            async with session.get(f"{self.url}/history/{prompt_id}", headers=self.headers) as r:
                entry = (await r.json()).get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                return entry.get("outputs") or {}
            await asyncio.sleep(0.02)
        return {}

    async def interrupt(self, session: aiohttp.ClientSession, prompt_id: str | None = None) -> None:
        """Interrupt the running prompt (only `prompt_id` if given) and drop it from the queue if still there."""
        try:
            async with session.post(self.url + "/interrupt", json={"prompt_id": prompt_id} if prompt_id else {},
                                    headers=self.headers, timeout=INTERRUPT_TIMEOUT):
                pass
            if prompt_id:
                async with session.post(self.url + "/queue", json={"delete": [prompt_id]}, headers=self.headers,
                                        timeout=INTERRUPT_TIMEOUT):
                    pass
        except (aiohttp.ClientError, asyncio.TimeoutError):
            pass
