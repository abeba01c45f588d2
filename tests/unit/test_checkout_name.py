"""The suite runs from a checkout of any folder name: the README clones this repository as `comfyui-sagemaker`,
which is not a Python name (tests/harness/checkout.py: pytest 9 imported the checkout's `__init__.py` bare there,
and every test errored)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # another pytest process
def test_a_test_runs_in_a_checkout_named_as_the_readme_clones_it(tmp_path):
    checkout = tmp_path / "comfyui-sagemaker"
    checkout.mkdir()
    for name in ("__init__.py", "pyproject.toml"):
        shutil.copy2(ROOT / name, checkout / name)
    shutil.copytree(ROOT / "tests", checkout / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "SM_TEST_TIER"))}
    r = subprocess.run([sys.executable, "-P", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                        "tests/unit/test_change_feed.py"], cwd=checkout, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout[-4000:] + r.stderr[-2000:]
