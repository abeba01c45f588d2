"""The worker's pool of ComfyUIs on stand-ins (no processes): who gets a ComfyUI and when, in arrival
order; a queued caller cancelled or gone; a ComfyUI that ends is restarted; none left fails the waiters."""

from __future__ import annotations

import asyncio
import concurrent.futures

import pytest
from comfyui_sagemaker.worker.coldstart import ColdStart
from comfyui_sagemaker.worker.devices import Device
from comfyui_sagemaker.worker.pool import ComfyPool, NoComfyUI, QueuedCancelled, Slot


class FakeComfy:
    """What the pool uses of a ComfyProcess."""

    def __init__(self, fail_starts: int = 0):
        self.fail_starts = fail_starts
        self.starts = 0
        self.code: int | None = None
        self.proc = None

    def start(self) -> None:
        self.starts += 1
        self.proc, self.code = object(), None

    async def wait_ready(self, session, timeout) -> None:
        if self.starts <= self.fail_starts:
            self.code = 1
            raise RuntimeError("ComfyUI exited with code 1")

    def exit_code(self) -> int | None:
        return self.code

    def stop(self) -> None:
        pass

    @property
    def pid(self) -> int:
        return 1000 + self.starts


def make_pool(n: int, fail_starts: int = 0) -> ComfyPool:
    slots = [Slot(i, Device("cpu"), FakeComfy(fail_starts)) for i in range(n)]
    return ComfyPool(slots, ColdStart(), restart_backoff=0.01)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def run(coro):
    # In a thread of its own: in the whole suite the browser tests' Playwright (sync API) keeps an event
    # loop marked running in the main thread, where asyncio.run() refuses to start.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, asyncio.wait_for(coro, 120)).result()


def test_free_comfyuis_first_then_strict_arrival_order():
    async def go():
        pool = make_pool(2)
        await pool.start(session=None)
        await settle()
        a, b = await pool.acquire("a"), await pool.acquire("b")
        assert {a.index, b.index} == {0, 1} and pool.running("a") is a
        waiting = [asyncio.create_task(pool.acquire(x)) for x in ("c", "d", "e")]
        await settle()
        assert pool.queued() == ["c", "d", "e"]
        pool.release(b)  # b's ComfyUI goes to c, the first in line, not to whoever asks next
        late = asyncio.create_task(pool.acquire("late"))
        await settle()
        assert waiting[0].done() and waiting[0].result() is b and pool.queued() == ["d", "e", "late"]
        pool.release(a)
        pool.release(b)
        await settle()
        assert waiting[1].result() is a and waiting[2].result() is b and pool.queued() == ["late"]
        assert [s.execution for s in pool.slots] == ["d", "e"]
        late.cancel()
        await pool.stop()

    run(go())


def test_a_cancelled_waiter_leaves_the_queue_at_once_and_a_gone_caller_gives_back_its_comfyui():
    async def go():
        pool = make_pool(1)
        await pool.start(session=None)
        held = await pool.acquire("held")
        first, second = asyncio.create_task(pool.acquire("x")), asyncio.create_task(pool.acquire("y"))
        await settle()
        assert pool.cancel_waiting("x") and not pool.cancel_waiting("nobody")
        with pytest.raises(QueuedCancelled):
            await first
        assert pool.queued() == ["y"]
        second.cancel()  # the caller disconnected while queued
        await settle()
        assert pool.queued() == []
        pool.release(held)
        assert held.state == "ready" and (await pool.acquire("z")) is held
        await pool.stop()

    run(go())


def test_a_comfyui_that_ends_is_restarted_and_its_run_learns_why():
    async def go():
        pool = make_pool(2)
        await pool.start(session=None)
        await settle()
        slot = await pool.acquire("run")
        slot.comfy.code = -9  # killed
        why = await pool.death_of(slot, wait=0.5)
        assert why == "ComfyUI 0 (cpu) exited with code -9" and slot.state == "restarting"
        other = await pool.acquire("meanwhile")  # the other ComfyUI serves
        assert other.index == 1
        pool.release(slot)  # the run's end leaves a restarting ComfyUI alone
        assert slot.state == "restarting"
        for _ in range(100):
            await asyncio.sleep(0.01)
            if slot.state == "ready":
                break
        assert slot.state == "ready" and slot.restarts == 1 and slot.comfy.starts == 2
        assert (await pool.acquire("next")) is slot
        await pool.stop()

    run(go())


def test_a_comfyui_that_never_starts_fails_alone_and_none_left_fails_everyone():
    async def go():
        pool = make_pool(1, fail_starts=99)
        with pytest.raises(NoComfyUI, match="did not start"):
            await pool.start(session=None)
        assert pool.slots[0].state == "failed" and pool.slots[0].comfy.starts == 5 and pool.failed()
        with pytest.raises(NoComfyUI):
            await pool.acquire("any")
        await pool.stop()

        mixed = ComfyPool([Slot(0, Device("cuda", "0"), FakeComfy(fail_starts=99)),
                           Slot(1, Device("cuda", "1"), FakeComfy())], ColdStart(), restart_backoff=0.01)
        first = await mixed.start(session=None)
        assert first.index == 1 and mixed.healthy()
        starts = [p for p in mixed.coldstart.to_json() if p["name"] == "comfyui_start"]
        assert [(p["comfyui"], p["device"]) for p in starts] == [(1, "cuda:1")]
        await mixed.stop()

    run(go())
