"""Async SageMaker runs watched by one loop per process, not one per run.

An accepted async request's result lands at its OutputLocation (or FailureLocation) in S3; the worker writes
its coarse progress to the store meanwhile (core/worker_contract.py). Each run is looked at on its own
schedule (at once, then backing off by 1.5x to every LONGEST_S s), and whether its endpoint still exists is
asked once per endpoint every DESCRIBE_EVERY_S s however many runs wait on it: one DescribeEndpoint poller
per endpoint, not per run. Each run's events and its answer reach the thread that follows it, so a slow
listener never holds up the other runs, and every run gets the answer a loop of its own would give.

With notices (aws/notifications.py: SageMaker's SNS notice of each run's end, received from an SQS queue),
a run invoked once the queue was there is looked at for its result when its notice comes, and otherwise
only every NOTICE_FALLBACK_S s (a notice lost is still found); its looks in between read only its progress.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..core.endpoints import InvocationFailed
from ..core.store import Store
from ..core.worker_contract import (
    PROGRESS_PREFIX,
    RESULTS_PREFIX,
    WorkerEvent,
    WorkerResult,
    read_progress,
    read_result,
)
from .errors import error_code, error_message

log = logging.getLogger("comfyui_sagemaker")
FIRST_LOOK_S = 0.2
LONGEST_S = 5.0
DESCRIBE_EVERY_S = 5.0
NOTIFIED_FIRST_LOOK_S = 1.0  # a run whose end is notified: no progress look for a run done within a second
NOTICE_FALLBACK_S = 60.0


class Notices(Protocol):
    """What the watch asks of aws/notifications.py's Notices."""

    def want(self, inference_id: str) -> None: ...

    def done(self, inference_id: str) -> None: ...


def s3_location(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    return parts.netloc, parts.path.lstrip("/")


def kept_result(store: Store, execution_id: str) -> bytes | None:
    """The result the worker created once (RESULTS_PREFIX), which no other environment's code can replace, unlike
    SageMaker's upload; None from a worker that does not keep one (the caller then reads SageMaker's)."""
    try:
        return store.get(f"{RESULTS_PREFIX}{execution_id}.json").data
    except Exception:  # missing, or unreadable here: SageMaker's copy
        return None


def relay_progress(store: Store, execution_id: str, seen: tuple[int, int],
                   on_event: Callable[[WorkerEvent], None]) -> tuple[int, int]:
    """Relay what the worker wrote to the store since the last look: new events, and its latest preview if
    it is newer than the one relayed. `seen` is (events relayed, preview sequence relayed)."""
    try:
        progress = read_progress(json.loads(store.get(f"{PROGRESS_PREFIX}{execution_id}.json").data))
    except Exception:  # not written yet, mid-write, or cannot be read: look again next time
        return seen
    events, preview, sequence = progress["events"], progress.get("preview"), progress.get("preview_seq", 0)
    for event in events[seen[0]:]:
        on_event(event)
    if preview is not None and sequence > seen[1]:
        on_event(preview)
    return max(seen[0], len(events)), max(seen[1], sequence)


@dataclass(eq=False)
class _Run:
    endpoint: str
    execution_id: str
    output: tuple[str, str]
    failure: tuple[str, str]
    deadline: float  # monotonic
    due: float
    delay: float = FIRST_LOOK_S
    seen: tuple[int, int] = (0, 0)
    notified: bool = False  # its end comes as a notice: its result is looked for then (and as a fallback)
    result_due: float = 0.0  # monotonic; when a notified run's result is looked for without a notice
    nudged: bool = False  # its notice came
    answers: queue.Queue = field(default_factory=queue.Queue)  # ("event", e) | ("result", r) | ("error", exc)


class AsyncWatch:
    """`s3`: a boto3 S3 client (the results); `store`: where the worker's progress is; `there(endpoint)`:
    whether the endpoint still exists (a passing error is not a deletion: say True); `clock` and
    `wait(event, seconds)`: the loop's time and sleep (tests: a fake clock's)."""

    def __init__(self, s3: Any, store: Store, there: Callable[[str], bool],
                 clock: Callable[[], float] = time.monotonic,
                 wait: Callable[[threading.Event, float], object] | None = None):
        self.s3 = s3
        self.store = store
        self._there = there
        self._clock = clock
        self._wait = wait or (lambda event, seconds: event.wait(seconds))
        self._runs: list[_Run] = []
        self._endpoints: dict[str, tuple[float, bool]] = {}  # endpoint -> (when asked, whether it was there)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.notices: Notices | None = None  # set by whoever receives the notices (SageMakerEndpoints)
        self._said_missed = False

    @property
    def watching(self) -> int:
        """How many runs wait on this loop."""
        with self._lock:
            return len(self._runs)

    def follow(self, endpoint: str, execution_id: str, resume: dict[str, Any],
               on_event: Callable[[WorkerEvent], None], notified: bool = False) -> WorkerResult:
        """Wait for an accepted async request's result (`resume`: its output and failure locations and the
        wall-clock time it is given up), relaying the worker's progress to `on_event` in this thread.
        `notified`: the run was invoked with the notices' queue in place, so its end will be noticed."""
        try:
            output, failure = s3_location(str(resume["output"])), s3_location(str(resume.get("failure") or ""))
            until = float(resume["until"])
        except (KeyError, TypeError, ValueError):
            raise InvocationFailed("the async request cannot be followed: where its result lands is unknown") \
                from None
        now = self._clock()
        notices = self.notices if notified else None
        run = _Run(endpoint, execution_id, output, failure, now + max(0.0, until - time.time()), now,
                   notified=notices is not None)
        if notices is not None:
            run.due, run.delay = now + NOTIFIED_FIRST_LOOK_S, NOTIFIED_FIRST_LOOK_S * 1.5
            run.result_due = now + NOTICE_FALLBACK_S
        with self._lock:
            self._runs.append(run)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, daemon=True, name="sagemaker-async-watch")
                self._thread.start()
        if notices is not None:  # once the run is there to be nudged
            notices.want(execution_id[:64])  # SageMaker's InferenceId: what the notice names
        self._wake.set()
        try:
            while True:
                kind, value = run.answers.get()
                if kind == "event":
                    on_event(value)
                elif kind == "result":
                    return value
                else:
                    raise value
        finally:
            self._forget(run)
            if notices is not None:
                notices.done(execution_id[:64])

    def nudge(self, inference_id: str) -> None:
        """A run's notice came: its result is looked for now."""
        with self._lock:
            for run in self._runs:
                if run.execution_id[:64] == inference_id:
                    run.nudged, run.due = True, self._clock()
        self._wake.set()

    def poll_all(self) -> None:
        """No more notices will come (their queue is gone): every run's result is looked for on the poll's
        schedule, from now on."""
        with self._lock:
            for run in self._runs:
                run.notified, run.due = False, self._clock()
        self._wake.set()

    def _forget(self, run: _Run) -> None:
        with self._lock:
            if run in self._runs:
                self._runs.remove(run)

    def _loop(self) -> None:
        while True:
            with self._lock:
                runs = list(self._runs)
                if not runs:  # nothing to watch: the loop ends, the next run starts another
                    self._thread = None
                    return
            for run in runs:
                if run.due <= self._clock():
                    self._look(run)
            with self._lock:
                dues = [r.due for r in self._runs]
            if dues:
                self._wait(self._wake, max(0.0, min(dues) - self._clock()))
                self._wake.clear()

    def _look(self, run: _Run) -> None:
        def say(kind: str, value: object) -> None:
            run.answers.put((kind, value))

        try:
            result = None
            if not run.notified or run.nudged or self._clock() >= run.result_due:
                unnoticed = run.notified and not run.nudged
                noticed = run.nudged
                run.nudged, run.result_due = False, self._clock() + NOTICE_FALLBACK_S
                result = self._result(run, lambda event: say("event", event), noticed)
                if result is not None and unnoticed:
                    self._missed(run)
            if result is None:
                if self._clock() >= run.deadline:
                    raise InvocationFailed("no async result in the time it was given; the run is marked failed")
                run.seen = relay_progress(self.store, run.execution_id, run.seen, lambda event: say("event", event))
                if not self._endpoint_there(run.endpoint):
                    raise InvocationFailed(f"endpoint {run.endpoint} was deleted while the run waited")
        except Exception as err:  # this run's answer, raised in its own thread
            self._forget(run)
            say("error", err)
            return
        if result is not None:
            self._forget(run)
            say("result", result)
            return
        with self._lock:  # a notice that came during this look is looked at now
            run.due = self._clock() + (0.0 if run.nudged else run.delay)
        run.delay = min(run.delay * 1.5, LONGEST_S)

    def _missed(self, run: _Run) -> None:
        """A notified run ended without its notice: said once per process, since every run is then late by up to
        NOTICE_FALLBACK_S s (a topic the execution role may not publish to, a queue the topic may not send to)."""
        if not self._said_missed:
            self._said_missed = True
            log.warning("comfyui-sagemaker: async run %s ended without SageMaker's notice and was found up to %.0f s "
                        "late: check that the endpoint's execution role may sns:Publish to the notification topic "
                        "and that the topic delivers to this ComfyUI's queue (aws/notifications.py)", run.execution_id,
                        NOTICE_FALLBACK_S)

    def _result(self, run: _Run, on_event: Callable[[WorkerEvent], None],
                noticed: bool = False) -> WorkerResult | None:
        """The run's result if it has landed; InvocationFailed if its failure has. `noticed`: SageMaker's notice of
        its end came, so the result the worker kept is there if it keeps one: read first, it is the answer (the
        one the run's result would be replaced by), and SageMaker's copy is not read at all."""
        from botocore.exceptions import ClientError

        kept = kept_result(self.store, run.execution_id) if noticed else None
        if kept is not None:
            relay_progress(self.store, run.execution_id, run.seen, on_event)
            return self._read(kept, f"{RESULTS_PREFIX}{run.execution_id}.json")
        for (bucket, key), failed in ((run.output, False), (run.failure, True)):
            if not key:
                continue
            try:
                data = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            except ClientError as err:
                if error_code(err) in ("NoSuchKey", "404"):
                    continue
                raise InvocationFailed(f"cannot read the async result: {error_message(err)}") from None
            if failed:
                raise InvocationFailed(f"the endpoint reported a failure: {data.decode(errors='replace')[:2000]}")
            relay_progress(self.store, run.execution_id, run.seen, on_event)  # what came after the last look
            kept = None if noticed else kept_result(self.store, run.execution_id)  # noticed: looked for above
            return self._read(kept or data, f"s3://{bucket}/{key}")
        return None

    @staticmethod
    def _read(data: bytes, where: str) -> WorkerResult:
        try:
            return read_result(json.loads(data))
        except (ValueError, RecursionError) as err:  # ShapeInvalid, ProtocolUnsupported, not JSON
            raise InvocationFailed(f"the endpoint's result at {where} cannot be read ({err})") from None

    def _endpoint_there(self, endpoint: str) -> bool:
        """Asked once per endpoint every DESCRIBE_EVERY_S s, for all the runs that wait on it."""
        now = self._clock()
        asked = self._endpoints.get(endpoint)
        if asked is None or now - asked[0] >= DESCRIBE_EVERY_S:
            try:
                there = bool(self._there(endpoint))
            except Exception:  # a passing error is not a deletion
                there = True
            asked = self._endpoints[endpoint] = (now, there)
        return asked[1]
