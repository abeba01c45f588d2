"""Cancels at the worker: only from an execution's own invoker, and forgotten with the execution.

- Each invocation is an `Execution` while it is queued or running, with the sha256 of its cancel token
  (core/cancel_tokens.py); a cancel must present the token. An execution invoked without one (an older
  caller) cannot be cancelled here: it runs to its end or its time limit.
- A cancel may come before its invocation (a local endpoint's cancel can overtake the invocation it
  follows): a cancel for an id the worker does not have is kept EARLY_TTL seconds, at most MAX_EARLY of
  them (the oldest go first), and an execution arriving with that id takes it only if the token is its own.
- Ids are at most MAX_ID characters and tokens at most MAX_TOKEN: memory stays bounded whoever calls.
- A running execution is interrupted; if its ComfyUI has not stopped it within the grace (a node that never
  checks for interruption: ComfyUI's interrupt is a flag its nodes must poll), that ComfyUI is restarted
  (`stop_running`) and the execution ends "cancelled (ComfyUI restarted to stop node X)".
- SageMaker cannot route a cancel to the instance that runs a prompt: the invoker leaves a marker in the
  store (async/cancel/<execution id>) with the execution's token, which its worker looks for (`marked`).
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ..core.cancel_tokens import MARKER_BYTES, digest_of, is_digest, matches, token_in_marker
from ..core.executions import CANCEL_PREFIX, ID_RE
from ..core.worker_contract import RESTARTED

MAX_ID = 128  # characters of an execution id (the extension's are 43)
MAX_EARLY = 256
EARLY_TTL = 300.0


@dataclass(eq=False)
class Execution:
    """One invocation while the worker has it; compared by identity (two may share an id)."""

    execution_id: str
    digest: str | None  # sha256 of its cancel token; None: invoked without one
    cancelled: bool = False
    slot: object | None = None  # the pool's Slot that runs it, once it has one
    ended: bool = False
    node: str | None = None  # the class_type of the node its ComfyUI runs now (its last "executing" event)
    restarted: str | None = None  # set when its ComfyUI was restarted to stop it: what the run ends with

    def restart_message(self) -> str:
        return f"cancelled ({RESTARTED} node {self.node})" if self.node else f"cancelled ({RESTARTED} it)"


class CancelBook:
    def __init__(self, max_early: int = MAX_EARLY, early_ttl: float = EARLY_TTL,
                 clock: Callable[[], float] = time.monotonic):
        self.max_early, self.early_ttl, self.clock = max_early, early_ttl, clock
        self.executions: dict[str, list[Execution]] = {}
        self.early: OrderedDict[str, tuple[str, float]] = OrderedDict()  # id -> (token's sha256, expiry)

    def begin(self, execution_id: str, digest: str | None) -> Execution:
        """Register an invocation; it is cancelled at once if its cancel came first with its token."""
        execution = Execution(execution_id, digest if is_digest(digest) else None)
        if not execution_id:
            return execution
        self.executions.setdefault(execution_id, []).append(execution)
        self._prune()
        early = self.early.pop(execution_id, None)
        if early is not None and execution.digest is not None and hmac.compare_digest(early[0], execution.digest):
            execution.cancelled = True
        return execution

    def end(self, execution: Execution) -> None:
        execution.ended = True
        executions = self.executions.get(execution.execution_id)
        if executions and execution in executions:
            executions.remove(execution)
            if not executions:
                del self.executions[execution.execution_id]

    def cancel(self, execution_id: str, token: str) -> list[Execution] | None:
        """The executions of `execution_id` that `token` cancels, marked cancelled: [] if the worker has
        executions of this id but the token is none of theirs; None if it has none (the cancel is kept a while)."""
        executions = self.executions.get(execution_id)
        if not executions:
            self._prune()
            self.early.pop(execution_id, None)
            self.early[execution_id] = (digest_of(token), self.clock() + self.early_ttl)
            while len(self.early) > self.max_early:
                self.early.popitem(last=False)
            return None
        hit = [e for e in executions if not e.ended and matches(token, e.digest)]
        for e in hit:
            e.cancelled = True
        return hit

    def _prune(self) -> None:
        now = self.clock()
        while self.early and next(iter(self.early.values()))[1] <= now:
            self.early.popitem(last=False)

    def size(self) -> dict[str, int]:
        """How many executions and early cancels it holds (what /status shows, as `runs`: the worker's wire)."""
        self._prune()
        return {"runs": sum(len(r) for r in self.executions.values()), "early_cancels": len(self.early)}


def marked(store, execution: Execution) -> bool:
    """The store holds a cancel marker for `execution` with its token. A marker without that token (anyone else
    who may write the store) is no cancel; only its first bytes are read, whatever its size."""
    if execution.digest is None or not ID_RE.fullmatch(execution.execution_id):
        return False
    try:
        data = store.read_range(f"{CANCEL_PREFIX}{execution.execution_id}", 0, MARKER_BYTES)
    except Exception:  # the store is the caller's: a failed look is not a cancel
        return False
    return matches(token_in_marker(data), execution.digest)


async def interrupt_until_done(session, slot, execution: Execution, limit: float = 60) -> bool:
    """Interrupt `execution` on `slot`'s ComfyUI until it has ended; whether it did within `limit` s. ComfyUI
    clears its interrupt flag when a prompt starts, so one interrupt sent between submit and start would be
    lost: it is repeated, aimed at this prompt only; the execution ends before its ComfyUI is given to another
    execution."""
    deadline = time.monotonic() + limit
    while not execution.ended and time.monotonic() < deadline:
        if slot.prompt_id:
            await slot.comfy.interrupt(session, slot.prompt_id)
        await asyncio.sleep(0.1)
    return execution.ended


async def stop_running(session, pool, slot, execution: Execution, grace: float) -> None:
    """Stop a cancelled running execution: interrupt it; if its ComfyUI still runs it after `grace` s, restart
    that ComfyUI (`pool.restart`: the run's connection to it breaks, and the run ends with
    `execution.restarted`). The slot is the execution's as long as it has not ended (execute releases it only
    after marking it ended), so the ComfyUI killed is never another run's."""
    if await interrupt_until_done(session, slot, execution, grace):
        return
    execution.restarted = execution.restart_message()
    await pool.restart(slot, f"a cancelled run ({execution.execution_id}) did not stop in node "
                             f"{execution.node or '?'} within {grace:g} s")
