"""The fast tier's guard recognises what it must not start (tests/harness/tiers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from harness.tiers import heavy

ROOT = Path("/repo")


@pytest.mark.parametrize(("argv", "marker"), [
    ([sys.executable, "/opt/ComfyUI/main.py", "--cpu"], "comfyui"),
    ([sys.executable, "-P", "main.py"], "comfyui"),
    ([sys.executable, str(ROOT), "worker", "serve"], "comfyui"),
    ([sys.executable, str(ROOT), "gateway", "--port", "1"], "comfyui"),
    (["/usr/lib/node_modules/playwright/driver/node", "cli.js"], "browser"),
    (["/usr/bin/chromium", "--headless"], "browser"),
    (["/somewhere/.dev/floor-venv/bin/python", "-m", "pytest"], "slow"),
    (["/usr/bin/node", "--test", "tests/js/a.test.mjs"], "slow"),
    (["/repo/tools/js/node_modules/.bin/tsc", "-p", "tools/js"], "slow"),
])
def test_what_the_fast_tier_refuses_names_its_marker(argv, marker):
    assert marker in (heavy(argv, ROOT) or "")


@pytest.mark.parametrize("argv", [
    [sys.executable, "-c", "print(1)"],
    [sys.executable, "-P", "-c", "...", "worker_image_uri"],
    ["git", "ls-files"],
    ["comfy", "node", "validate"],
])
def test_what_the_fast_tier_allows(argv):
    assert heavy(argv, ROOT) is None


@pytest.mark.parametrize(("markers", "frontend", "group"), [
    ({"browser"}, "pinned", "browser-pinned"),
    ({"browser", "comfyui"}, "newest", "browser-newest"),  # a frontend's ComfyUI, not the shared processes
    ({"comfyui"}, None, "processes"),
    ({"comfyui", "stubber"}, None, "processes"),
    ({"installed"}, None, "installed"),
    ({"slow"}, None, None),
    ({"stubber", "floor"}, None, None),
    (set(), None, None),
])
def test_the_whole_suites_groups(markers, frontend, group):
    from harness.groups import group_of

    assert group_of(markers, frontend) == group


def devenv():
    import importlib.util

    spec = importlib.util.spec_from_file_location("devenv_for_test", Path(__file__).resolve().parents[2] / "tools" /
                                                  "devenv.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("args", "workers"), [
    ([], ["-n", "3", "--dist", "loadgroup"]),
    (["tests/integration/test_team.py", "-x"], ["-n", "3", "--dist", "loadgroup"]),
    (["-n", "1"], []),
    (["-n0"], []),
    (["--numprocesses=2"], []),
    (["-p", "no:xdist"], []),
    (["--pdb"], []),
])
def test_the_whole_suite_runs_on_three_workers_unless_the_caller_chose(args, workers):
    assert devenv().whole_suite_workers(args) == workers
