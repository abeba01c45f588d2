"""The worker image installs the repository with `pip install` (worker/Dockerfile): the wheel holds
every module and data file the worker and the extension need, and runs as `python -m comfyui_sagemaker`."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from harness.installed import clone_files, copy_extension

pytestmark = pytest.mark.installed


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a copy, as the image's `COPY . ` + `pip install` does (setuptools writes build/ beside it)."""
    out = tmp_path_factory.mktemp("wheel")
    source = copy_extension(tmp_path_factory.mktemp("source"), "comfyui-sagemaker")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(out), str(source)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return next(out.glob("comfyui_sagemaker-*.whl"))


def test_the_wheel_holds_every_runtime_file(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    left_out = ("tests/", "bench/", "tools/", ".ci/")
    wanted = [f for f in clone_files() if not f.startswith(left_out)
              and (f.endswith((".py", ".js", ".css", ".json")) or f == "requirements.txt")]
    assert "worker/server.py" in wanted and "web/js/sagemaker.js" in wanted
    missing = [f for f in wanted if f"comfyui_sagemaker/{f}" not in names]
    assert not missing, missing


def test_the_installed_package_runs_its_cli_and_worker(wheel, tmp_path):
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    where = subprocess.run([sys.executable, "-P", "-c", "import comfyui_sagemaker; print(comfyui_sagemaker.__file__)"],
                           env=env, capture_output=True, text=True)
    assert where.stdout.strip().startswith(str(site)), where.stdout + where.stderr
    for args in (["--help"], ["worker", "--help"]):
        r = subprocess.run([sys.executable, "-P", "-m", "comfyui_sagemaker", *args], env=env, capture_output=True,
                           text=True)
        assert r.returncode == 0 and "usage: python -m comfyui_sagemaker" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-P", "-m", "comfyui_sagemaker", "rules"], env=env, capture_output=True,
                       text=True)
    assert json.loads(r.stdout)["template_name"]["max_length"] == 20
