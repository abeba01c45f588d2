"""Cancel frees the compute (issue 32, point 2), on stand-ins: a cancelled run whose ComfyUI stops it is only
interrupted; one whose ComfyUI does not stop it within the grace gets that ComfyUI restarted, the run says which
node it was stuck in, and the ComfyUI is handed to no other run before the cancelled one has let it go."""

from __future__ import annotations

import asyncio
import concurrent.futures

from comfyui_sagemaker.worker.cancels import Execution, stop_running
from comfyui_sagemaker.worker.coldstart import ColdStart
from comfyui_sagemaker.worker.devices import Device
from comfyui_sagemaker.worker.pool import ComfyPool, Slot
from comfyui_sagemaker.worker.settings import WorkerSettings


class FakeComfy:
    """What the pool and the cancel use of a ComfyProcess: `stops` says whether an interrupt stops its prompt."""

    def __init__(self, stops: bool, execution: Execution | None = None):
        self.stops, self.execution = stops, execution
        self.starts = self.kills = self.interrupts = 0
        self.code: int | None = None
        self.proc: object | None = None

    def start(self) -> None:
        self.starts += 1
        self.proc, self.code = object(), None

    async def wait_ready(self, session, timeout) -> None:
        pass

    def exit_code(self) -> int | None:
        return self.code

    def stop(self) -> None:
        pass

    def kill(self) -> None:
        self.kills += 1
        self.code = -9

    async def interrupt(self, session, prompt_id=None) -> None:
        self.interrupts += 1
        if self.stops and self.execution is not None:
            self.execution.ended = True  # what execute does once ComfyUI ends the prompt

    @property
    def pid(self) -> int:
        return 1000 + self.starts


def run(coro):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # see test_worker_pool_queue.run
        return pool.submit(asyncio.run, asyncio.wait_for(coro, 60)).result()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def busy_pool(stops: bool) -> tuple[ComfyPool, Slot, Execution]:
    execution = Execution("run-1", None, cancelled=True)
    execution.node = "ImageMorphology"
    slot = Slot(0, Device("cpu"), FakeComfy(stops, execution))  # type: ignore[arg-type]
    pool = ComfyPool([slot], ColdStart(), restart_backoff=0.01)
    await pool.start(session=None)  # type: ignore[arg-type]
    assert await pool.acquire("run-1") is slot
    execution.slot = slot
    slot.prompt_id = "p1"
    return pool, slot, execution


def test_a_run_its_comfyui_stops_is_interrupted_never_restarted():
    async def go():
        pool, slot, execution = await busy_pool(stops=True)
        await stop_running(None, pool, slot, execution, grace=5)
        assert slot.comfy.interrupts >= 1 and slot.comfy.kills == 0 and execution.restarted is None
        await pool.stop()

    run(go())


def test_a_run_stuck_past_the_grace_gets_its_comfyui_restarted_once_it_lets_go():
    async def go():
        pool, slot, execution = await busy_pool(stops=False)
        await stop_running(None, pool, slot, execution, grace=0.3)
        assert slot.comfy.kills == 1 and slot.comfy.interrupts >= 1
        assert execution.restarted == "cancelled (ComfyUI restarted to stop node ImageMorphology)"
        assert slot.state == "restarting" and "ImageMorphology" in (slot.reason or "")
        # Nobody gets it while the cancelled run still holds it, whatever the supervisor sees.
        waiting = asyncio.create_task(pool.acquire("next"))
        await asyncio.sleep(0.5)
        assert not waiting.done() and slot.comfy.starts == 1 and slot.execution == "run-1"
        execution.ended = True
        pool.release(slot)  # the run ended (its connection broke): now it starts again and serves the next
        assert await waiting is slot
        assert slot.comfy.starts == 2 and slot.restarts == 1 and slot.execution == "next" and slot.reason is None
        await pool.stop()

    run(go())


def test_a_restart_names_no_node_when_none_was_running():
    execution = Execution("run-2", None)
    assert execution.restart_message() == "cancelled (ComfyUI restarted to stop it)"


def test_the_grace_is_a_setting_of_ten_seconds_by_default():
    uri = "file:///store/environments/e/versions/v000001.json"
    assert WorkerSettings.from_env({"SAGEMAKER_MANIFEST_URI": uri}).cancel_grace == 10.0
    assert WorkerSettings.from_env({"SAGEMAKER_MANIFEST_URI": uri, "WORKER_CANCEL_GRACE_S": "2.5"}).cancel_grace == 2.5
