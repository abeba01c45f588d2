"""Stopping ComfyUI (Ctrl+C) with runs in flight exits at once: the runs are taken over at the next start
(core/executions.py take_over), so nothing in flight holds the interpreter's exit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

# A process whose execution service and input sync each have work that would take an hour, and that then exits as
# ComfyUI's main does after Ctrl+C (its main thread returns).
SCRIPT = textwrap.dedent("""
    import sys, threading, time
    from pathlib import Path
    from comfyui_sagemaker.core.executions import ExecutionService
    from comfyui_sagemaker.core.input_sync import InputSync
    from comfyui_sagemaker.local.folder_store import FolderStore

    root = Path(sys.argv[1])
    store = FolderStore(root / "store")
    started = threading.Barrier(3)

    def an_hour():
        started.wait()
        time.sleep(3600)

    executions = ExecutionService(store, None, None, None, None, None, lambda *a: None)
    sync = InputSync(store, root / "input", None, root / "index.json")
    executions.pool.submit(an_hour)
    sync.pool.submit(an_hour)
    started.wait()
    print("in flight", flush=True)
""")


@pytest.mark.parametrize("pool", ["executions and input sync"])
def test_a_process_with_runs_and_uploads_in_flight_exits_without_waiting_for_them(tmp_path, pool):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = proc.communicate(timeout=120)  # a deadline far above an exit's, far below the work's hour
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"the process waited for its {pool} at exit")
    assert proc.returncode == 0 and out.strip() == "in flight", err
