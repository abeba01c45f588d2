"""Cancels at the worker: only from a run's own invoker, and forgotten with the run.

- Each invocation is a `Run` while it is queued or running, with the sha256 of its cancel token
  (core/cancel_tokens.py); a cancel must present the token. A run invoked without one (an older caller)
  cannot be cancelled here: it runs to its end or its time limit.
- A cancel may come before its invocation (a local endpoint's cancel can overtake the invocation it
  follows): a cancel for an id the worker does not have is kept EARLY_TTL seconds, at most MAX_EARLY of
  them (the oldest go first), and a run arriving with that id takes it only if the token is its own.
- Ids are at most MAX_ID characters and tokens at most MAX_TOKEN: memory stays bounded whoever calls.
- SageMaker cannot route a cancel to the instance that runs a prompt: the invoker leaves a marker in the
  store (async/cancel/<execution id>) with the run's token, which the run's worker looks for (`marked`).
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

MAX_ID = 128  # characters of an execution id (the extension's are 43)
MAX_EARLY = 256
EARLY_TTL = 300.0


@dataclass(eq=False)
class Run:
    """One invocation while the worker has it; compared by identity (two may share an id)."""

    execution_id: str
    digest: str | None  # sha256 of its cancel token; None: invoked without one
    cancelled: bool = False
    slot: object | None = None  # the pool's Slot that runs it, once it has one
    ended: bool = False


class CancelBook:
    def __init__(self, max_early: int = MAX_EARLY, early_ttl: float = EARLY_TTL,
                 clock: Callable[[], float] = time.monotonic):
        self.max_early, self.early_ttl, self.clock = max_early, early_ttl, clock
        self.runs: dict[str, list[Run]] = {}
        self.early: OrderedDict[str, tuple[str, float]] = OrderedDict()  # id -> (token's sha256, expiry)

    def begin(self, execution_id: str, digest: str | None) -> Run:
        """Register an invocation; it is cancelled at once if its cancel came first with its token."""
        run = Run(execution_id, digest if is_digest(digest) else None)
        if not execution_id:
            return run
        self.runs.setdefault(execution_id, []).append(run)
        self._prune()
        early = self.early.pop(execution_id, None)
        if early is not None and run.digest is not None and hmac.compare_digest(early[0], run.digest):
            run.cancelled = True
        return run

    def end(self, run: Run) -> None:
        run.ended = True
        runs = self.runs.get(run.execution_id)
        if runs and run in runs:
            runs.remove(run)
            if not runs:
                del self.runs[run.execution_id]

    def cancel(self, execution_id: str, token: str) -> list[Run] | None:
        """The runs of `execution_id` that `token` cancels, marked cancelled: [] if the worker has runs of
        this id but the token is none of theirs; None if it has none (the cancel is kept a while)."""
        runs = self.runs.get(execution_id)
        if not runs:
            self._prune()
            self.early.pop(execution_id, None)
            self.early[execution_id] = (digest_of(token), self.clock() + self.early_ttl)
            while len(self.early) > self.max_early:
                self.early.popitem(last=False)
            return None
        hit = [run for run in runs if not run.ended and matches(token, run.digest)]
        for run in hit:
            run.cancelled = True
        return hit

    def _prune(self) -> None:
        now = self.clock()
        while self.early and next(iter(self.early.values()))[1] <= now:
            self.early.popitem(last=False)

    def size(self) -> dict[str, int]:
        """How many runs and early cancels it holds (what /status shows)."""
        self._prune()
        return {"runs": sum(len(r) for r in self.runs.values()), "early_cancels": len(self.early)}


def marked(store, run: Run) -> bool:
    """The store holds a cancel marker for `run` with its token. A marker without that token (anyone else
    who may write the store) is no cancel; only its first bytes are read, whatever its size."""
    if run.digest is None or not ID_RE.fullmatch(run.execution_id):
        return False
    try:
        data = store.read_range(f"{CANCEL_PREFIX}{run.execution_id}", 0, MARKER_BYTES)
    except Exception:  # the store is the caller's: a failed look is not a cancel
        return False
    return matches(token_in_marker(data), run.digest)


async def interrupt_until_done(session, slot, run: Run, limit: float = 60) -> None:
    """Interrupt `run` on `slot`'s ComfyUI until it has ended. ComfyUI clears its interrupt flag when a
    prompt starts, so one interrupt sent between submit and start would be lost: it is repeated, aimed at
    this prompt only; the run ends before its ComfyUI is given to another run."""
    deadline = time.monotonic() + limit
    while not run.ended and time.monotonic() < deadline:
        if slot.prompt_id:
            await slot.comfy.interrupt(session, slot.prompt_id)
        await asyncio.sleep(0.1)
