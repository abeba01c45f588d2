"""The harness's leak check: a process tree left behind (a grandchild in a session of its own, as local
endpoint workers are) is found by its mark and killed."""

import os
import subprocess
import sys
import uuid

from harness import reaper


def test_a_process_tree_left_behind_is_found_and_killed():
    run_id = uuid.uuid4().hex
    env = {**os.environ, reaper.MARK: run_id}
    # A child that starts a grandchild in its own session and exits: only the grandchild is left.
    script = ("import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], "
              "start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(p.pid)")
    child = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    grandchild = int(child.stdout)
    assert [p.pid for p in reaper.marked(run_id)] == [grandchild]
    leaked = reaper.reap(run_id, grace=0.2)
    assert len(leaked) == 1 and f"pid {grandchild}" in leaked[0] and "time.sleep(120)" in leaked[0]
    assert reaper.marked(run_id) == []


def test_a_run_inside_another_reaps_only_its_own(monkeypatch):
    """A pytest that a test starts (tests/unit/test_checkout_name.py) inherits the session's mark: its own run must
    get another, or its end kills the session's browsers and ComfyUIs; a second start in one process keeps it."""
    monkeypatch.delenv(reaper.MARK, raising=False)
    monkeypatch.delenv(reaper.OWNER, raising=False)
    outer = reaper.start()
    assert reaper.start() == outer
    inner = subprocess.run([sys.executable, "-c", "from harness import reaper; print(reaper.start())"],
                           env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(reaper.__file__))},
                           capture_output=True, text=True, check=True).stdout.strip()
    assert inner and inner != outer


def test_a_run_started_with_sigint_ignored_starts_processes_that_take_it():
    """A run started in the background of a non-interactive shell (`./dev test &`) inherits SIGINT ignored, and so
    would every ComfyUI and worker it starts: each stop then waited its whole grace for a SIGKILL."""
    child = ("import signal, subprocess, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
             "probe = [sys.executable, '-c', "
             "'import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)']; "
             "before = subprocess.run(probe, capture_output=True, text=True).stdout.strip(); "
             "from harness import reaper; reaper.start(); "
             "after = subprocess.run(probe, capture_output=True, text=True).stdout.strip(); print(before, after)")
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(reaper.__file__))})
    assert out.stdout.split() == ["True", "False"], out
