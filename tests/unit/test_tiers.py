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
