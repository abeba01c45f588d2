"""A real-time invocation's time counts from its arrival (SageMaker abandons the call 60 s after sending it),
queue wait included: a prompt still queued at its deadline is never started, and one whose caller hung up
while it was queued is not started either. The worker's execute on stand-in ComfyUIs (no processes)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

from comfyui_sagemaker.aws.sagemaker_endpoints import SageMakerEndpoints
from comfyui_sagemaker.worker.coldstart import ColdStart
from comfyui_sagemaker.worker.devices import Device
from comfyui_sagemaker.worker.pool import ComfyPool, Slot
from comfyui_sagemaker.worker.server import Worker
from comfyui_sagemaker.worker.settings import WorkerSettings


class StandIn:
    """What the pool uses of a ComfyProcess (no run(): a prompt that reaches it fails as worker_error)."""

    proc, pid = object(), 1000

    def start(self) -> None:
        pass

    async def wait_ready(self, session, timeout) -> None:
        pass

    def exit_code(self) -> int | None:
        return None

    def stop(self) -> None:
        pass


def make_pool(n: int) -> ComfyPool:
    return ComfyPool([Slot(i, Device("cpu"), StandIn()) for i in range(n)], ColdStart(), restart_backoff=0.01)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def run(coro):
    # In a thread of its own, as tests/unit/test_worker_pool_queue.py does (Playwright's loop in the main one).
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, asyncio.wait_for(coro, 60)).result()


def worker(tmp_path, timeout: float = 60.0, from_arrival: bool = True) -> Worker:
    settings = WorkerSettings(manifest_uri=(tmp_path / "store/environments/e/versions/v000001.json").as_uri(),
                              cache_dir=tmp_path / "cache", base_dir=tmp_path / "base",
                              invocation_timeout=timeout, deadline_from_arrival=from_arrival)
    return Worker(settings)


async def nothing(event) -> None:
    pass


def test_a_prompt_still_queued_at_its_deadline_never_runs(tmp_path):
    async def go():
        w = worker(tmp_path)
        w.pool = make_pool(1)
        await w.pool.start(session=None)
        await settle()
        busy = await w.pool.acquire("earlier")  # the only ComfyUI runs an earlier prompt
        result = await w.execute("late", {"1": {}}, [], nothing, deadline=time.monotonic() + 0.2)
        assert result["status"] == "failed" and result["error"]["code"] == "timeout", result
        assert "queued" in result["error"]["message"] and w.pool.queued() == []  # it left the queue
        w.pool.release(busy)
        await settle()
        assert all(s.execution is None for s in w.pool.slots)  # and nothing took the ComfyUI for it
    run(go())


def test_a_prompt_whose_caller_left_while_queued_is_not_started(tmp_path):
    async def go():
        w = worker(tmp_path)
        w.pool = make_pool(1)
        await w.pool.start(session=None)
        await settle()
        # The stand-in ComfyUI has no run(): reaching it would fail with worker_error, not cancelled.
        result = await w.execute("gone", {"1": {}}, [], nothing, deadline=time.monotonic() + 60,
                                 caller_gone=lambda: True)
        assert result["error"]["code"] == "cancelled" and "went away" in result["error"]["message"], result
        assert all(s.execution is None for s in w.pool.slots)  # its ComfyUI is free again
    run(go())


def test_realtime_workers_count_from_arrival_and_async_ones_do_not(aws_env):
    endpoints = SageMakerEndpoints("s3://b/p", "arn:aws:iam::123456789012:role/R", "image", "us-east-1")

    def env(mode: str) -> dict:
        manifest = {"name": "P", "version": 1, "endpoint": {"kind": "sagemaker", "instance_type": "ml.g5.xlarge",
                                                            "initial_count": 1, "mode": mode, "autoscaling": None}}
        return endpoints.model_request(manifest)["PrimaryContainer"]["Environment"]

    assert env("realtime")["WORKER_DEADLINE_FROM_ARRIVAL"] == "1"
    assert "WORKER_DEADLINE_FROM_ARRIVAL" not in env("async")
    assert WorkerSettings.from_env({"SAGEMAKER_MANIFEST_URI": "s3://b/m", **env("realtime")}).deadline_from_arrival
    assert not WorkerSettings.from_env({"SAGEMAKER_MANIFEST_URI": "s3://b/m"}).deadline_from_arrival


def test_without_a_deadline_a_queued_prompt_waits(tmp_path):
    async def go():
        w = worker(tmp_path, from_arrival=False)
        w.pool = make_pool(1)
        await w.pool.start(session=None)
        await settle()
        busy = await w.pool.acquire("earlier")
        task = asyncio.create_task(w.execute("waits", {"1": {}}, [], nothing, caller_gone=lambda: True))
        await asyncio.sleep(0.3)
        assert not task.done() and w.pool.queued() == ["waits"]
        w.pool.release(busy)
        assert (await task)["error"]["code"] == "cancelled"
    run(go())
