"""Warm before ready (issue 28 point 8, issue 35 point 3): the manifest's warm-up prompt runs on each ComfyUI
of the worker before `GET /ping` answers 200, and /ping answers (503) while it runs; its outputs are
discarded; each ComfyUI's warm-up is a phase of the cold start report; a failed warm-up is reported and
the worker serves; a ComfyUI that dies running it, or restarts later, warms again before it is handed out.

The real worker program (its aiohttp app, materialiser and pool) on stand-in ComfyUIs (no processes): each
warm-up is held until the test lets it go, so every assertion is an ordering, never a timing."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import inspect
import json
import time

import aiohttp
from aiohttp.test_utils import TestClient, TestServer
from comfyui_sagemaker.core.worker_contract import PROTOCOL_VERSION
from comfyui_sagemaker.local.folder_store import FolderStore
from comfyui_sagemaker.worker.coldstart import ColdStart
from comfyui_sagemaker.worker.devices import Device
from comfyui_sagemaker.worker.pool import ComfyPool, Slot
from comfyui_sagemaker.worker.server import Worker, build_app
from comfyui_sagemaker.worker.settings import WorkerSettings

WARMUP = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 7}},
          "2": {"class_type": "LoadImage", "inputs": {"image": "warm.png"}},
          "9": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "warm"}}}
REAL = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 1}}}
INPUT = b"\x89PNG\r\n\x1a\nwarm-up input"


class StandIn:
    """What the worker uses of a ComfyProcess. `run` writes an output file as SaveImage does, and a run
    is held at `gate` until the test sets it. `fail`: "node" ends warm-ups with a node error, "die" makes
    the first run end the process."""

    def __init__(self, index: int, slot_dir, journal: list, fail: str = ""):
        self.index, self.slot_dir, self.journal, self.fail = index, slot_dir, journal, fail
        self.proc, self.code, self.starts, self.pid = None, None, 0, 1000 + index
        self.prompts: list[dict] = []
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    def folder(self, kind: str):
        return self.slot_dir / kind

    def start(self) -> None:
        self.starts += 1
        self.proc, self.code = object(), None
        for kind in ("input", "output", "temp"):
            self.folder(kind).mkdir(parents=True, exist_ok=True)

    async def wait_ready(self, session, timeout) -> None:
        pass

    def exit_code(self) -> int | None:
        return self.code

    def stop(self) -> None:
        pass

    async def node_types(self, session) -> set[str]:
        return {"EmptyImage", "LoadImage", "SaveImage"}

    async def interrupt(self, session, prompt_id=None) -> None:
        pass

    async def run(self, session, prompt, on_event, on_submitted=lambda pid: None):
        self.prompts.append(prompt)
        warmup = prompt == WARMUP
        if warmup:  # its input file is in this ComfyUI's own input folder before it runs
            assert (self.folder("input") / "warm.png").read_bytes() == INPUT
        self.entered.set()
        await self.gate.wait()
        on_submitted(f"p{len(self.prompts)}")
        await on_event({"type": "execution_start", "data": {}})
        if warmup and self.fail == "die" and self.starts == 1:
            self.code = 1
            raise aiohttp.ClientConnectionError("ComfyUI went away")
        if warmup and self.fail == "node":
            return "execution_error", {}, {"node_type": "KSampler", "message": "CUDA out of memory"}
        name = f"{'warm' if warmup else 'real'}_{len(self.prompts):05}_.png"
        (self.folder("output") / name).write_bytes(b"png")
        self.journal.append(("ran", self.index, "warm-up" if warmup else "prompt"))
        return "execution_success", {"9": {"images": [{"filename": name, "subfolder": "", "type": "output"}]}}, None


class StandInWorker(Worker):
    def __init__(self, settings: WorkerSettings, journal: list, fail: str = ""):
        super().__init__(settings)
        self.journal, self.fail_mode, self.comfys = journal, fail, []

    def comfy_process(self, i, device, count, layers):
        comfy = StandIn(i, self.s.base_dir / "comfyui" / str(i), self.journal, self.fail_mode)
        self.comfys.append(comfy)
        return comfy  # type: ignore[return-value]


def run(coro):
    # In a thread of its own, as tests/unit/test_worker_pool_queue.py does (Playwright's loop in the main one).
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, asyncio.wait_for(coro, 60)).result()


def publish(tmp_path, warmup: dict | None) -> tuple[FolderStore, str]:
    store = FolderStore(tmp_path / "store")
    manifest: dict = {"name": "E", "version": 1, "custom_nodes": [], "models": []}
    if warmup is not None:
        blob = tmp_path / "warm.png"
        blob.write_bytes(INPUT)
        sha = hashlib.sha256(INPUT).hexdigest()
        store.put_blob(sha, str(blob))
        manifest["warmup"] = {**warmup, "inputs": {"warm.png": sha}}
    store.put("environments/E/versions/v000001.json", json.dumps(manifest).encode())
    return store, (tmp_path / "store/environments/E/versions/v000001.json").as_uri()


def make_worker(tmp_path, journal: list, warmup: dict | None = None, comfyuis: int = 2,
                fail: str = "") -> StandInWorker:
    _, uri = publish(tmp_path, {"template": "Portrait", "prompt": WARMUP} if warmup is None else warmup)
    settings = WorkerSettings(manifest_uri=uri, cache_dir=tmp_path / "cache", base_dir=tmp_path / "base",
                              install_packages=False, extension_dir=None, exit_after_failure=-1,
                              comfyui_count=str(comfyuis), restart_backoff=0.01)
    return StandInWorker(settings, journal, fail)


async def until(check, what: str) -> None:
    """Wait for a condition the worker reaches on its own (a generous deadline; nothing asserts a time).
    `check` returns a bool, or an awaitable of one."""
    deadline = time.monotonic() + 30
    while not await answer(check()):
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.01)


async def answer(value):
    return await value if inspect.isawaitable(value) else value


def warming(w: StandInWorker, count: int):
    return lambda: len(w.comfys) == count and all(c.entered.is_set() for c in w.comfys)


async def ping(client: TestClient, journal: list) -> int:
    status = (await client.get("/ping")).status
    journal.append(("ping", status))
    return status


async def ready(client: TestClient) -> bool:
    return (await (await client.get("/status")).json())["state"] == "ready"


def test_ping_says_ready_only_after_each_comfyui_ran_the_warm_up_and_answers_while_it_runs(tmp_path):
    journal: list = []

    async def go():
        w = make_worker(tmp_path, journal)
        async with TestClient(TestServer(build_app(w))) as client:
            await until(warming(w, 2), "both ComfyUIs warming")
            assert await ping(client, journal) == 503  # answered while both warm-ups are held
            status = await (await client.get("/status")).json()
            assert [c["state"] for c in status["comfyuis"]] == ["warming", "warming"], status
            assert status["activity"] == "warm-up prompt on 2 of 2 ComfyUIs"  # what the Endpoints section shows
            assert [p["state"] for p in status["phases"] if p["name"] == "warmup"] == ["running", "running"]
            w.comfys[0].gate.set()
            await until(lambda: ("ran", 0, "warm-up") in journal, "ComfyUI 0 warmed")
            assert await ping(client, journal) == 503  # ComfyUI 1 has not warmed yet
            w.comfys[1].gate.set()
            await until(lambda: ready(client), "the worker ready")
            assert await ping(client, journal) == 200
            return await (await client.get("/status")).json()

    status = run(go())
    warmed = [journal.index(("ran", i, "warm-up")) for i in (0, 1)]
    assert max(warmed) < journal.index(("ping", 200)), journal
    assert ("ping", 200) not in journal[:max(warmed)]
    phases = [p for p in status["phases"] if p["name"] == "warmup"]
    assert sorted(p["comfyui"] for p in phases) == [0, 1] and all(p["state"] == "done" for p in phases), phases
    assert all(p["template"] == "Portrait" and "model load" in p["detail"] for p in phases), phases
    names = [p["name"] for p in status["phases"]]
    assert names.index("comfyui_start") < names.index("warmup"), names


def test_the_warm_ups_outputs_are_discarded_and_the_first_real_prompt_is_no_cold_start(tmp_path):
    journal: list = []

    async def go():
        w = make_worker(tmp_path, journal, comfyuis=1)
        async with TestClient(TestServer(build_app(w))) as client:
            await until(warming(w, 1), "warming")
            w.comfys[0].gate.set()
            await until(lambda: ready(client), "the worker ready")
            output = w.comfys[0].folder("output")
            assert list(output.iterdir()) == []  # the warm-up's SaveImage file is gone
            only_input = [f"blobs/sha256/{hashlib.sha256(INPUT).hexdigest()}"]
            assert FolderStore(tmp_path / "store").list("blobs/") == only_input  # nothing of it in the store
            r = await client.post("/invocations", json={"protocol_version": PROTOCOL_VERSION, "execution_id": "x1",
                                                        "prompt": REAL})
            result = await r.json()
            assert result["status"] == "succeeded", result
            assert [i["filename"] for i in result["outputs"]["9"]["images"]] == ["real_00002_.png"]
            return await (await client.get("/status")).json()

    status = run(go())
    assert [p["name"] for p in status["phases"]].count("first_prompt_model_load") == 0, status["phases"]


def test_a_failed_warm_up_is_a_failed_phase_and_the_worker_serves_anyway(tmp_path):
    journal: list = []

    async def go():
        w = make_worker(tmp_path, journal, comfyuis=1, fail="node")
        async with TestClient(TestServer(build_app(w))) as client:
            await until(warming(w, 1), "warming")
            assert await ping(client, journal) == 503
            w.comfys[0].gate.set()
            await until(lambda: ready(client), "the worker ready despite the failed warm-up")
            assert await ping(client, journal) == 200
            r = await client.post("/invocations", json={"protocol_version": PROTOCOL_VERSION, "execution_id": "x2",
                                                        "prompt": REAL})
            assert (await r.json())["status"] == "succeeded"
            return await (await client.get("/status")).json()

    status = run(go())
    [phase] = [p for p in status["phases"] if p["name"] == "warmup"]
    assert phase["state"] == "failed" and "KSampler: CUDA out of memory" in phase["error"], phase
    assert status["state"] == "ready" and status["reason"] is None


def test_a_comfyui_that_dies_in_its_warm_up_is_started_again_and_warms_before_ready(tmp_path):
    journal: list = []

    async def go():
        w = make_worker(tmp_path, journal, comfyuis=1, fail="die")
        async with TestClient(TestServer(build_app(w))) as client:
            await until(warming(w, 1), "warming")
            w.comfys[0].gate.set()
            await until(lambda: ready(client), "the worker ready")
            assert await ping(client, journal) == 200
            return w.comfys[0], await (await client.get("/status")).json()

    comfy, status = run(go())
    assert comfy.starts == 2 and comfy.prompts == [WARMUP, WARMUP], comfy.prompts
    assert journal.index(("ran", 0, "warm-up")) < journal.index(("ping", 200))
    [phase] = [p for p in status["phases"] if p["name"] == "warmup"]  # the first start's, failed with the death
    assert phase["state"] == "failed", phase


def test_a_restarted_comfyui_warms_again_before_it_is_handed_out():
    warmed: list = []

    async def go():
        held = asyncio.Event()

        async def warm(slot: Slot, first: bool) -> None:
            warmed.append((slot.index, first))
            if not first:
                await held.wait()

        comfy = StandInPoolComfy()
        pool = ComfyPool([Slot(0, Device("cpu"), comfy)], ColdStart(), restart_backoff=0.01, warm=warm)  # type: ignore[arg-type]
        await pool.start(session=None)  # type: ignore[arg-type]
        assert warmed == [(0, True)] and pool.slots[0].state == "ready"
        comfy.code = 1  # the process ends; the supervisor restarts it
        await until(lambda: pool.slots[0].state == "warming", "the restart warming")
        waiting = asyncio.create_task(pool.acquire("next"))
        await asyncio.sleep(0)
        assert not waiting.done() and pool.queued() == ["next"]  # an unwarmed ComfyUI is nobody's
        held.set()
        slot = await waiting
        assert slot.index == 0 and warmed == [(0, True), (0, False)]
        pool.release(slot)
        await pool.stop()

    run(go())


class StandInPoolComfy:
    def __init__(self):
        self.proc, self.code, self.pid = None, None, 1000

    def start(self) -> None:
        self.proc, self.code = object(), None

    async def wait_ready(self, session, timeout) -> None:
        pass

    def exit_code(self) -> int | None:
        return self.code

    def stop(self) -> None:
        pass
