"""Every process a test session or a bench starts carries a mark in its environment (inherited by
its children, grandchildren and processes in their own session, such as local endpoint workers).
At the end, whatever still carries the mark was left running: it is killed and reported, so a
leak fails the run instead of outliving it.

The processes a run starts are stopped with SIGINT (ComfyUI, the fake worker) and must take it, however the
run was started: a command started in the background of a non-interactive shell (`cmd &`, as CI or a script may)
inherits SIGINT ignored, every process it starts after it too, and each stop then waited its whole grace
(20 s) for a SIGKILL: 51 tests of a whole run at 20 s or more. A run restores Python's own handler first."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psutil

MARK = "SM_TEST_RUN_ID"
OWNER = "SM_TEST_RUN_OWNER"  # the pid whose run the mark is


def take_interrupts() -> None:
    """SIGINT handled in this process, so the processes it starts take it (an ignored signal is inherited
    through exec, a handler is not: a child gets the default and Python installs its KeyboardInterrupt)."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def start() -> str:
    """Mark every process started from now on; the run's id. A run started again in the same process (a bench's
    `reaping` inside a test) keeps its mark; a run in a process the mark was inherited by (a pytest a test starts)
    gets its own, so its end reaps only what it started, never the processes of the run around it. The run's
    processes take SIGINT (take_interrupts)."""
    take_interrupts()
    if os.environ.get(OWNER) != str(os.getpid()) or MARK not in os.environ:
        os.environ[MARK], os.environ[OWNER] = uuid.uuid4().hex, str(os.getpid())
    return os.environ[MARK]


def _ours_to_the_end(proc: psutil.Process, me: int) -> bool:
    """Python's multiprocessing resource tracker of this very process: it ends when we do."""
    return proc.ppid() == me and "multiprocessing.resource_tracker" in " ".join(proc.cmdline())


def marked(run_id: str) -> list[psutil.Process]:
    out = []
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get(MARK) == run_id and not _ours_to_the_end(proc, me):
                out.append(proc)
        except (psutil.Error, OSError):
            continue
    return out


def describe(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid}: {' '.join(proc.cmdline())[:300]}"
    except psutil.Error:
        return f"pid {proc.pid}"


def reap(run_id: str, grace: float = 30.0) -> list[str]:
    """Wait up to `grace` s for marked processes to end (a stop in progress), then kill what is
    left; return descriptions of what had to be killed."""
    deadline = time.monotonic() + grace
    left = marked(run_id)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = marked(run_id)
    found = [describe(p) for p in left]
    for proc in left:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(left, timeout=5)
    return found


@contextmanager
def reaping(what: str) -> Iterator[None]:
    """For scripts (bench/): everything started inside is gone afterwards, also on failure;
    a leak is reported and makes the script fail."""
    run_id = start()
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        leaked = reap(run_id)
        if leaked:
            print(f"{what} left processes running (killed now):\n  " + "\n  ".join(leaked), flush=True)
            if not failed:
                raise SystemExit(1)
