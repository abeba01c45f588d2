"""Results kept for a caller that went away: a local endpoint's ComfyUI killed (or stopped with Ctrl+C) while
its runs were in flight takes them over at its next start and asks the worker for their results
(local/endpoint_runs.py's `resume`) instead of failing runs that were done and paid for.

- Each run's result is kept once it ends, keyed by execution id, at most KEEP_RESULTS of them for at most
  KEEP_MINUTES (the oldest go first): memory stays bounded whoever calls. A run still queued or running is
  waited for.
- Who may read one: the worker's door (its token, worker/server.py's guard) lets in only the process that
  started the worker. Beyond it a result is given to the run's invoker only: the request carries the run's
  cancel token (core/cancel_tokens.py), whose sha256 its invocation carried; a worker without a token of its
  own gives a result to no one else.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from ..core.cancel_tokens import matches
from ..core.worker_contract import WorkerResult

KEEP_RESULTS = 100
KEEP_MINUTES = 60.0


@dataclass
class Kept:
    result: WorkerResult
    digest: str | None  # sha256 of the run's cancel token (None: invoked without one)
    expires: float


@dataclass
class Pending:
    """A run of this id still queued or running: its digest, and the futures of those waiting for it."""

    digests: list[str | None] = field(default_factory=list)
    waiters: list[asyncio.Future] = field(default_factory=list)


class ResultBook:
    def __init__(self, size: int = KEEP_RESULTS, minutes: float = KEEP_MINUTES,
                 clock: Callable[[], float] = time.monotonic):
        self.size, self.ttl, self.clock = size, minutes * 60, clock
        self.kept: OrderedDict[str, Kept] = OrderedDict()
        self.pending: dict[str, Pending] = {}

    @property
    def keeps(self) -> bool:
        """Whether this worker keeps results at all (a SageMaker container does not: no door reaches it)."""
        return self.size > 0 and self.ttl > 0

    def begin(self, execution_id: str, digest: str | None) -> None:
        if self.keeps and execution_id:
            self.pending.setdefault(execution_id, Pending()).digests.append(digest)

    def end(self, execution_id: str, digest: str | None, result: WorkerResult) -> None:
        """A run ended: its result is kept (the newest of an id wins) and whoever waits for it gets it."""
        if not self.keeps or not execution_id:
            return
        self._prune()
        self.kept.pop(execution_id, None)
        self.kept[execution_id] = Kept(result, digest, self.clock() + self.ttl)
        while len(self.kept) > self.size:
            self.kept.popitem(last=False)
        pending = self.pending.get(execution_id)
        if pending is None:
            return
        if digest in pending.digests:
            pending.digests.remove(digest)
        waiters, pending.waiters = pending.waiters, []
        if not pending.digests:
            del self.pending[execution_id]
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(result)

    def known(self, execution_id: str) -> bool:
        self._prune()
        return execution_id in self.kept or execution_id in self.pending

    def allowed(self, execution_id: str, token: object, door_locked: bool) -> bool:
        """Whether a request may read this run's result: with the run's cancel token, or through a worker door
        that only the worker's own process passes (`door_locked`: the worker has a token, which the request had)."""
        if token is not None:
            kept = self.kept.get(execution_id)
            digests = [kept.digest] if kept is not None else []
            digests += self.pending[execution_id].digests if execution_id in self.pending else []
            return any(matches(token, d) for d in digests)
        return door_locked

    async def wait(self, execution_id: str) -> WorkerResult | None:
        """The run's result: at once if kept, when it ends if it is queued or running; None if the worker does
        not know it (never ran here, or kept past its limit)."""
        self._prune()
        kept = self.kept.get(execution_id)
        if kept is not None:
            return kept.result
        pending = self.pending.get(execution_id)
        if pending is None:
            return None
        waiter: asyncio.Future = asyncio.get_running_loop().create_future()
        pending.waiters.append(waiter)
        try:
            return await waiter
        finally:
            if execution_id in self.pending and waiter in self.pending[execution_id].waiters:
                self.pending[execution_id].waiters.remove(waiter)

    def _prune(self) -> None:
        now = self.clock()
        while self.kept and next(iter(self.kept.values())).expires <= now:
            self.kept.popitem(last=False)

    def count(self) -> int:
        self._prune()
        return len(self.kept)
