"""Worker processes of local endpoints: started in a session of their own (they outlive a ComfyUI restart and
are stopped as a group), known by pid, stopped with SIGINT and, if they do not go, SIGKILL.

An endpoint may have several at once (a redeploy's new worker beside the serving one, replaced ones finishing
their runs), so they are kept by pid. A pid this process did not start (a worker adopted after a restart) is
looked at with signal 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import TypeGuard

STOP_GRACE_S = 20.0  # after SIGINT, before SIGKILL


def free_port(host: str = "127.0.0.1") -> int:
    """A free port on `host` (loopback, or a shared endpoint's share_host, IPv4 or IPv6)."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def alive(pid: int | None) -> TypeGuard[int]:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


class Processes:
    def __init__(self) -> None:
        self._procs: dict[int, subprocess.Popen] = {}

    def start(self, argv: list[str], env: dict[str, str], log_path: Path) -> int:
        """A worker with its output appended to `log_path`; its pid."""
        log = open(log_path, "ab")
        try:
            proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        self._procs[proc.pid] = proc
        return proc.pid

    def running(self, pid: int | None) -> bool:
        proc = self._procs.get(pid) if pid else None
        if proc is not None:
            return proc.poll() is None
        return alive(pid)

    def stop(self, pid: int | None) -> None:
        """Its whole process group (the worker's ComfyUIs too); returns once it is gone."""
        proc = self._procs.pop(pid, None) if pid else None
        if alive(pid):
            try:
                os.killpg(pid, signal.SIGINT)
            except OSError:
                pass
            deadline = time.monotonic() + STOP_GRACE_S
            while alive(pid) and time.monotonic() < deadline:
                if proc is not None and proc.poll() is not None:
                    break
                time.sleep(0.05)
            if alive(pid) and (proc is None or proc.poll() is None):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
