"""A ComfyUI on a store without a ComfyUI process, for unit tests of the services and their routes.

`FakeComfy` is the extension as a ComfyUI hosts it, minus ComfyUI: the composition root (services.Services)
and the HTTP face (server_routes, registered as ComfyUI registers them, on an aiohttp app served from a thread
on a free 127.0.0.1 port when a test asks for it) built from plain ComfyFacts: its own input, output, model and
config folders, a node catalog of the types the tests use (ComfyUI's core nodes, the test pack, this
extension's own), and a FakeEndpoints (tests/harness/fake_endpoints.py) as every endpoint. What browsers would
get through ComfyUI's websocket is kept in `sent`. Several FakeComfys on one store and one FakeEndpoints are a
team (each its own role, instance id and folders), as several ComfyUIs on a shared store and endpoint.

Not here: ComfyUI's own queue, /prompt, /view and websocket, its validation (validate_prompt is None, so the
endpoint's ComfyUI is the check, as on the gateway), and the start-up work (`background()` runs it when a test
means a restart)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from pathlib import Path

import requests
from aiohttp import web
from comfyui_sagemaker import server_routes
from comfyui_sagemaker.core import config as config_mod
from comfyui_sagemaker.core.analysis import BUILTIN, NodeInfo, input_specs
from comfyui_sagemaker.core.environments import manifest_key
from comfyui_sagemaker.core.parameters import IMAGE_NODE, MODEL_NODES, OUTPUT_NODE
from comfyui_sagemaker.core.store import blob_key
from comfyui_sagemaker.core.templates import now
from comfyui_sagemaker.server_routes.context import ComfyFacts, Context
from comfyui_sagemaker.services import Services

from .comfyui import ROOT
from .fake_endpoints import FakeEndpoints
from .fixtures import TEST_MODELS, TEST_PACK

PACK_TYPES = ("SMTestScale", "SMTestFail", "SMTestWait", "SMTestPreview")
MAX_UPLOAD = 100 * 1024 * 1024  # ComfyUI's default --max-upload-size: its app's client_max_size


class Catalog:
    """ComfyUI's node registry for the node types the tests use (comfy_facts.ComfyCatalog's answers): upload
    and model combos list the files of the input and model folders as ComfyUI's INPUT_TYPES do."""

    def __init__(self, input_dir: Path, models_dir: Path):
        self.input_dir, self.models_dir = input_dir, models_dir

    def _files(self, folder: str) -> list[str]:
        root = self.models_dir / folder
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []

    def _inputs(self) -> list[str]:
        return sorted(p.name for p in self.input_dir.iterdir() if p.is_file())

    def _types(self) -> dict[str, tuple[str, dict]]:
        image, image_upload = ("IMAGE",), (self._inputs(), {"image_upload": True})
        core = {
            "EmptyImage": {"width": ("INT", {}), "height": ("INT", {}), "batch_size": ("INT", {}),
                           "color": ("INT", {})},
            "ImageInvert": {"image": image},
            "ImageBlend": {"image1": image, "image2": image, "blend_factor": ("FLOAT", {}),
                           "blend_mode": (["normal", "multiply", "screen", "overlay", "soft_light", "difference"],)},
            "SaveImage": {"images": image, "filename_prefix": ("STRING", {})},
            "PreviewImage": {"images": image},
            "LoadImage": {"image": image_upload},
            "CheckpointLoaderSimple": {"ckpt_name": (self._files("checkpoints"),)},
        }
        pack = {
            "SMTestScale": {"image": image, "lora_name": (self._files("loras"),), "factor": ("FLOAT", {})},
            "SMTestFail": {"image": image, "message": ("STRING", {})},
            "SMTestWait": {"image": image, "signal": ("STRING", {}), "timeout": ("FLOAT", {})},
            "SMTestPreview": {"image": image, "steps": ("INT", {}), "pause": ("FLOAT", {})},
        }
        own = {name: {} for name in ("SageMakerParamText", "SageMakerParamInt", "SageMakerParamFloat",
                                     "SageMakerParamSeed", "SageMakerParamBoolean", "SageMakerParamChoice")}
        own.update({IMAGE_NODE: {"image": image_upload}, OUTPUT_NODE: {"images": image, "name": ("STRING", {})}})
        own.update({name: {"default": (self._files(folder),)} for name, folder in MODEL_NODES.items()})
        return {**{t: ("core", s) for t, s in core.items()}, **{t: (TEST_PACK, s) for t, s in pack.items()},
                **{t: (BUILTIN, s) for t, s in own.items()}}

    def info(self, node_type: str) -> NodeInfo | None:
        found = self._types().get(node_type)
        return NodeInfo(found[0], input_specs({"required": found[1]})) if found else None

    def types_by_pack(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for node_type, (pack, _) in self._types().items():
            out.setdefault(pack, []).append(node_type)
        return {pack: sorted(types) for pack, types in out.items()}


def store_config(store) -> dict:
    """config.json's store keys for `store` (a folder, or S3 on moto)."""
    if store.kind == "folder":
        return {"store": "folder", "store_path": str(store.root)}
    return {"store": "s3", "s3_bucket": store.bucket, "s3_prefix": store.prefix.strip("/"), "region": "us-east-1"}


def publish(store, name: str, templates: tuple[str, ...] = (), version: int = 1,
            models: tuple[str, ...] = ("loras/style.safetensors",)) -> dict:
    """An environment version as a publish writes it (core/publish.py's manifest): the test pack and the
    test models (their blobs in the store too), written straight into the store. Returns the manifest."""
    packs = [{"folder": TEST_PACK, "identity": {"kind": "local"}, "dirty": True, "digest": "0" * 64,
              "archive": {"sha256": hashlib.sha256(TEST_PACK.encode()).hexdigest(), "size": len(TEST_PACK)},
              "node_types": list(PACK_TYPES)}]
    entries = []
    for path in models:
        folder, file = path.split("/", 1)
        data = TEST_MODELS[folder][file]
        digest = hashlib.sha256(data).hexdigest()
        store.put(blob_key(digest), data)
        entries.append({"folder": folder, "name": file, "size": len(data), "sha256": digest})
    manifest = {"name": name, "version": version, "comfyui_version": "0.3.75", "python": "3.11", "platform": {},
                "torch": None, "python_packages": [], "custom_nodes": packs, "models": entries,
                "core_node_types": [], "templates": list(templates), "include": "templates",
                "endpoint": {"kind": "local"}, "size": 0, "notes": [], "created_at": now()}
    store.create(manifest_key(name, version), json.dumps(manifest).encode())
    return manifest


class FakeComfy:
    def __init__(self, base: Path, store, endpoints: FakeEndpoints, role: str = "designer",
                 name: str | None = None, multi_user: bool = False, config: dict | None = None):
        self.base = Path(base)
        self.endpoints = endpoints
        for sub in ("input", "output", "config"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        for folder, files in TEST_MODELS.items():
            for file, data in files.items():
                path = self.base / "models" / folder / file
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        self.config_dir = self.base / "config"
        values = {**store_config(store), "role": role, "display_name": name or role, **(config or {})}
        (self.config_dir / config_mod.CONFIG_FILE).write_text(json.dumps(values))
        self.sent: list[tuple[str, dict, str | None]] = []  # (event, data, client id or None for everyone)
        self._sent_lock = threading.Lock()
        models = self.base / "models"
        self.facts = ComfyFacts(
            version="0.3.75", listen=("127.0.0.1",), config_dir=self.config_dir, input_dir=self.base / "input",
            output_dir=self.base / "output", extension_dir=ROOT,
            model_folders=lambda: {f: ([str(models / f)], [".safetensors"]) for f in TEST_MODELS},
            catalog=Catalog(self.base / "input", models), send_event=self._send, multi_user=multi_user)
        self.app = web.Application(client_max_size=MAX_UPLOAD)
        routes = web.RouteTableDef()
        # ComfyUI's registration (server_routes.register) but for its start-up work (sweeps, re-adoption,
        # watchers), which runs only when a test asks (`background`), and the requirements check (package metadata
        # read at each start): this Python is the dev one. Every endpoint of every configuration is the fake.
        self.ctx = Context(self.facts, providers={endpoints.kind: lambda: endpoints})
        server_routes.install(routes, self.app, self.ctx)
        self.app.add_routes(routes)
        told = endpoints.on_change
        endpoints.on_change = lambda view: (told(view), self.services.send_event("sagemaker.endpoint", view))
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._serving = threading.Lock()

    # what browsers would get

    def _send(self, event: str, data: dict, sid: str | None = None) -> None:
        with self._sent_lock:
            self.sent.append((event, data, sid))

    def page(self, client_id: str | None) -> list[tuple[str, dict]]:
        """The events sent to that browser (None: to every browser), in order."""
        with self._sent_lock:
            return [(event, data) for event, data, sid in self.sent if sid == client_id]

    def page_events(self, client_id: str, prompt_id: str) -> list[dict]:
        """ComfyUI-named events of one prompt sent to that browser, as {type, data}, in order."""
        return [{"type": e, "data": d} for e, d in self.page(client_id)
                if not e.startswith("sagemaker.") and (d or {}).get("prompt_id") == prompt_id]

    # the services

    @property
    def services(self) -> Services:
        """The services of the configuration that runs."""
        return self.ctx.services

    @property
    def executions(self):
        return self.services.executions

    def owner(self):
        return self.services.owner

    def template(self, name: str, prompt: dict, environment: str | None = None, workflow: dict | None = None):
        """A template published (and bound), as the designer's sidebar does."""
        self.services.templates.create(name, workflow or prompt, prompt)
        if environment is not None:
            return self.services.templates.update(name, environment=environment)
        return self.services.templates.get(name)

    def wait(self, execution_id: str, states: tuple[str, ...] = ("succeeded", "failed", "cancelled"),
             timeout: float = 120) -> dict:
        """The record once in one of `states`; for an end, once this ComfyUI is done with the run too (its end
        written and said to the pages)."""
        final = all(s in ("succeeded", "failed", "cancelled") for s in states)
        deadline = time.monotonic() + timeout
        while True:
            record = self.executions.get(execution_id, localise=False)
            if record["state"] in states and not (final and self.executions.live(execution_id)):
                return self.executions.get(execution_id, localise=False)
            if time.monotonic() > deadline:
                raise AssertionError(f"execution {execution_id} never {' or '.join(states)}: {record}")
            time.sleep(0.01)

    def background(self) -> None:
        """The start-up work a ComfyUI does (Extension.start), here and now: what a restart runs."""
        self.ctx.extension.start(wait=True)

    # the HTTP face

    def serve(self) -> FakeComfy:
        """The routes on a free 127.0.0.1 port, served from a thread of their own."""
        with self._serving:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=loop.run_forever, name="fake-comfy", daemon=True)
                self._thread.start()
                port = asyncio.run_coroutine_threadsafe(self._serve(), loop).result(timeout=60)
                self.url, self._loop = f"http://127.0.0.1:{port}", loop
        return self

    async def _serve(self) -> int:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def request(self, method: str, path: str, **kw) -> requests.Response:
        self.serve()
        kw.setdefault("timeout", 60)
        return requests.request(method, self.url + path, **kw)

    def get(self, path: str, **kw) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw) -> requests.Response:
        return self.request("PUT", path, **kw)

    def delete(self, path: str, **kw) -> requests.Response:
        return self.request("DELETE", path, **kw)

    def close(self) -> None:
        """What a ComfyUI's exit stops: its services' watchers, its run threads once idle, its HTTP face."""
        self.ctx.extension.stop()
        if "executions" in self.services.__dict__:
            self.services.executions.pool.shutdown(wait=False, cancel_futures=True)
        with self._serving:
            if self._loop is None:
                return
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=60)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=60)
            self._loop.close()
            self._loop = None
