"""The worker's ComfyUIs: one per device, each running one prompt at a time, shared fairly.

- `acquire` hands out a free ComfyUI (the lowest-numbered ready one), or queues the caller: callers are
  served strictly in arrival order (FIFO), whichever ComfyUI frees first. A queued caller can be
  cancelled (`cancel_waiting`) and leaves the queue at once.
- A ComfyUI whose process ends is restarted (after 1, 2, 4, ... s; 5 failed starts in a row and it stays
  `failed`) while the others serve; the run it had fails with the reason (`died`), never silently.
- A busy ComfyUI that does not stop a cancelled prompt is killed (`restart`) and started again once its run
  has let it go, so it is never handed to another run while the old prompt could still be in it.
- With a warm-up (worker/warmup.py), a ComfyUI runs it once it answers and before it is handed out
  (state `warming`), at its first start and after a restart; `settled()` waits for every first start.
- States: `starting`, `warming`, `ready` (idle), `busy`, `restarting`, `failed`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

from ..core.net.retry import Backoff
from .coldstart import ColdStart
from .comfy import ComfyProcess
from .devices import Device

log = logging.getLogger("comfyui_sagemaker.worker")
START_ATTEMPTS = 5
READY_TIMEOUT_S = 600.0


class QueuedCancelled(Exception):
    """The caller was cancelled while it waited for a ComfyUI."""


class NoComfyUI(Exception):
    """Every ComfyUI of the worker has failed: nothing can run a prompt."""


@dataclass
class Slot:
    index: int
    device: Device
    comfy: ComfyProcess
    state: str = "starting"
    execution: str | None = None
    prompt_id: str | None = None
    restarts: int = 0
    reason: str | None = None
    first_prompt_done: bool = False
    died: str | None = None  # why the process ended, for the run it had
    restart_on_release: bool = False  # killed by `restart`: started again when its run releases it
    ready_at: float | None = None
    since: float = field(default_factory=time.monotonic)

    def set(self, state: str) -> None:
        self.state, self.since = state, time.monotonic()

    def submitted(self, prompt_id: str) -> None:
        self.prompt_id = prompt_id

    def alive(self) -> bool:
        return self.comfy.proc is not None and self.comfy.exit_code() is None

    def to_json(self) -> dict:
        return {"index": self.index, "device": self.device.label, "state": self.state, "execution": self.execution,
                "restarts": self.restarts, "reason": self.reason, "pid": self.comfy.pid if self.alive() else None}


@dataclass
class _Waiter:
    execution_id: str
    future: asyncio.Future
    key: object = None  # what cancel_waiting names it by (the worker's cancels.Execution: two may share an id)


class ComfyPool:
    session: aiohttp.ClientSession  # the worker's, given to start() (before any ComfyUI starts)

    def __init__(self, slots: list[Slot], coldstart: ColdStart, on_change: Callable[[], None] = lambda: None,
                 restart_backoff: float = 1.0, warm: Callable[[Slot, bool], Awaitable[None]] | None = None):
        self.slots = slots
        # Run on a ComfyUI that answers, before it serves: (slot, first start?); raises if the ComfyUI died.
        self.warm = warm
        self.coldstart = coldstart
        self.on_change = on_change
        self.restart_backoff = restart_backoff
        self.waiters: deque[_Waiter] = deque()
        self._tasks: set[asyncio.Task] = set()
        self._first_ready: asyncio.Future | None = None
        self._settled: asyncio.Event | None = None
        self._first_starts = 0
        self._supervisor: asyncio.Task | None = None

    # start-up and supervision

    async def start(self, session: aiohttp.ClientSession) -> Slot:
        """Start every ComfyUI at once; return the first that is ready (the others join as they come up).
        NoComfyUI if none comes up."""
        self.session = session
        self._first_ready = asyncio.get_running_loop().create_future()
        self._settled, self._first_starts = asyncio.Event(), len(self.slots)
        for slot in self.slots:
            self._spawn(self._bring_up(slot, first=True))
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
        return await self._first_ready

    async def settled(self) -> None:
        """Every ComfyUI's first start has ended, ready (warmed) or failed."""
        if self._settled is None:
            raise RuntimeError("the pool has not started")
        await self._settled.wait()

    def _first_start_ended(self) -> None:
        self._first_starts -= 1
        if self._first_starts <= 0 and self._settled is not None:
            self._settled.set()

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _bring_up(self, slot: Slot, first: bool) -> None:
        pauses = Backoff(self.restart_backoff).pauses()  # 1, 2, 4, ... times restart_backoff
        recorded = warm_recorded = False  # each phase once per first start, whatever the attempts
        for attempt in range(START_ATTEMPTS):
            if attempt or not first:  # a first start tries at once, a restart after the first pause
                await asyncio.sleep(next(pauses))
            t0 = time.monotonic()
            try:
                await asyncio.to_thread(slot.comfy.start)
                await slot.comfy.wait_ready(self.session, READY_TIMEOUT_S)
                seconds = time.monotonic() - t0
                if first and not recorded:
                    recorded = True
                    self.coldstart.record("comfyui_start", "ComfyUI started", seconds, comfyui=slot.index,
                                          device=slot.device.label)
                if self.warm is not None:
                    slot.set("warming")
                    self._changed()
                    report, warm_recorded = first and not warm_recorded, warm_recorded or first
                    await self.warm(slot, report)
            except (RuntimeError, OSError, aiohttp.ClientError) as err:
                slot.reason = f"ComfyUI {slot.index} ({slot.device.label}) did not start: {err}"
                log.error("%s (attempt %d of %d)", slot.reason, attempt + 1, START_ATTEMPTS)
                await asyncio.to_thread(slot.comfy.stop)
                continue
            if not first:
                slot.restarts += 1
                log.info("ComfyUI %d (%s) restarted in %.1f s", slot.index, slot.device.label, seconds)
            slot.reason, slot.died, slot.ready_at = None, None, time.monotonic()
            slot.set("ready")
            self._changed()
            if self._first_ready is not None and not self._first_ready.done():
                self._first_ready.set_result(slot)
            if first:
                self._first_start_ended()
            self._dispatch()
            return
        slot.set("failed")
        self._changed()
        if first:
            self._first_start_ended()
        if self.failed():
            reason = NoComfyUI(slot.reason or "no ComfyUI started")
            if self._first_ready and not self._first_ready.done():
                self._first_ready.set_exception(reason)
            while self.waiters:  # nothing will ever serve them
                waiter = self.waiters.popleft()
                if not waiter.future.done():
                    waiter.future.set_exception(reason)

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            for slot in self.slots:
                if slot.state in ("ready", "busy") and slot.comfy.exit_code() is not None:
                    self._died(slot)

    def _died(self, slot: Slot) -> None:
        if slot.state not in ("ready", "busy"):
            return
        code = slot.comfy.exit_code()
        slot.died = f"ComfyUI {slot.index} ({slot.device.label}) exited with code {code}"
        slot.reason = slot.died
        log.error("%s%s; restarting it", slot.died, f" while running {slot.execution}" if slot.execution else "")
        slot.set("restarting")
        self._changed()
        self._spawn(self._bring_up(slot, first=False))

    async def death_of(self, slot: Slot, wait: float = 2.0) -> str | None:
        """Why `slot`'s ComfyUI ended, if it did (a broken connection may come before the exit code)."""
        deadline = time.monotonic() + wait
        while slot.comfy.exit_code() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if slot.comfy.exit_code() is None:
            return None
        self._died(slot)
        return slot.died or f"ComfyUI {slot.index} ({slot.device.label}) exited with code {slot.comfy.exit_code()}"

    async def restart(self, slot: Slot, reason: str) -> bool:
        """Kill `slot`'s ComfyUI, busy with a prompt it does not stop, and start it again once its run has
        released it (`release`); the others serve meanwhile. False if it was not busy any more."""
        if slot.state != "busy":
            return False
        slot.reason, slot.restart_on_release = reason, True
        slot.set("restarting")  # before the kill: the supervisor leaves a restarting ComfyUI alone
        log.warning("%s; restarting ComfyUI %d (%s)", reason, slot.index, slot.device.label)
        self._changed()
        await asyncio.to_thread(slot.comfy.kill)
        return True

    def healthy(self) -> bool:
        return any(s.state in ("ready", "busy") and s.alive() for s in self.slots)

    def failed(self) -> bool:
        return all(s.state == "failed" for s in self.slots)

    async def stop(self) -> None:
        if self._supervisor:
            self._supervisor.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*(asyncio.to_thread(s.comfy.stop) for s in self.slots))

    def _changed(self) -> None:
        try:
            self.on_change()
        except Exception as err:  # reporting never stops the pool
            log.warning("pool change report: %s", err)

    # sharing

    def _free(self) -> Slot | None:
        return next((s for s in self.slots if s.state == "ready" and s.alive()), None)

    def _take(self, slot: Slot, execution_id: str) -> Slot:
        slot.set("busy")
        slot.execution, slot.prompt_id = execution_id, None
        self._changed()
        return slot

    async def acquire(self, execution_id: str, key: object = None) -> Slot:
        """A ComfyUI for this execution, in arrival order. QueuedCancelled if cancelled while waiting."""
        if self.failed():
            raise NoComfyUI("every ComfyUI of this worker has failed")
        if not self.waiters:
            slot = self._free()
            if slot is not None:
                return self._take(slot, execution_id)
        waiter = _Waiter(execution_id, asyncio.get_running_loop().create_future(), key)
        self.waiters.append(waiter)
        self._changed()
        try:
            return await waiter.future
        except asyncio.CancelledError:
            # The caller went away (client disconnected): leave the queue, or give back what was handed over.
            if waiter in self.waiters:
                self.waiters.remove(waiter)
            elif waiter.future.done() and not waiter.future.cancelled() and waiter.future.exception() is None:
                self.release(waiter.future.result())
            raise

    def _dispatch(self) -> None:
        while self.waiters:
            slot = self._free()
            if slot is None:
                return
            waiter = self.waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_result(self._take(slot, waiter.execution_id))

    def release(self, slot: Slot) -> None:
        slot.execution = slot.prompt_id = None
        if slot.restart_on_release:
            slot.restart_on_release = False
            self._spawn(self._bring_up(slot, first=False))
        elif slot.state == "busy":
            if slot.alive():
                slot.set("ready")
                self._changed()
            else:
                self._died(slot)
        self._dispatch()

    def cancel_waiting(self, execution_id: str, key: object = None) -> bool:
        """Take a queued caller out of the queue: the one acquired with `key` if given, else by its id."""
        for waiter in list(self.waiters):
            if waiter.execution_id == execution_id and (key is None or waiter.key is key) and not waiter.future.done():
                self.waiters.remove(waiter)
                waiter.future.set_exception(QueuedCancelled(execution_id))
                self._changed()
                return True
        return False

    def running(self, execution_id: str) -> Slot | None:
        return next((s for s in self.slots if execution_id and s.execution == execution_id), None)

    def queued(self) -> list[str]:
        return [w.execution_id for w in self.waiters]

    def status(self) -> list[dict]:
        return [s.to_json() for s in self.slots]
