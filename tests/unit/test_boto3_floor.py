"""The AWS request suites (tests marked stubber) on the lowest boto3 and botocore that requirements.txt
allows: a call or parameter newer than the floor fails here (botocore's Stubber validates each request
against that version's service model), instead of in a user's older ComfyUI environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from comfyui_sagemaker.install import requirements

ROOT = Path(__file__).resolve().parents[2]
SUITES = ["tests/unit/test_endpoint_lifecycle.py", "tests/unit/test_sagemaker_endpoints.py",
          "tests/unit/test_s3_store_requests.py", "tests/unit/test_aws_errors.py", "tests/unit/test_endpoint_logs.py",
          "tests/unit/test_runtime_errors.py", "tests/unit/test_s3_conditional.py",
          "tests/unit/test_aws_setup_requests.py", "tests/unit/test_endpoint_concurrency.py",
          "tests/unit/test_worker_fetch.py", "tests/unit/test_endpoint_stop_start.py",
          "tests/unit/test_config.py", "tests/unit/test_route_shapes.py", "tests/unit/test_endpoint_config_model.py",
          "tests/unit/test_route_answers.py", "tests/unit/test_config_changes_model.py",
          "tests/unit/test_realtime_routing.py", "tests/unit/test_endpoint_usage.py",
          "tests/unit/test_instance_pools.py"]


def floor_python() -> str:
    path = os.environ.get("SM_FLOOR_PYTHON") or str(ROOT / ".dev" / "floor-venv" / "bin" / "python")
    if not Path(path).exists():
        raise RuntimeError(f"no floor Python at {path}: run the tests with `./dev test` (it builds one)")
    return path


@pytest.mark.slow  # another Python environment (.dev/floor-venv)
def test_the_aws_request_suites_pass_on_the_lowest_boto3_allowed(tmp_path):
    floors = dict(requirements())
    python = floor_python()
    versions = subprocess.run([python, "-c", "import boto3, botocore, pydantic; "
                               "print(boto3.__version__, botocore.__version__, pydantic.VERSION)"],
                              capture_output=True, text=True, check=True).stdout.split()
    assert versions == [floors["boto3"], floors["boto3"], floors["pydantic"]], versions
    (tmp_path / "comfyui_sagemaker").symlink_to(ROOT, target_is_directory=True)  # the package, by its name
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "tests")])}
    suites = [s for s in SUITES if (ROOT / s).exists()]
    r = subprocess.run([python, "-P", "-m", "pytest", "-q", "-m", "stubber or floor", "--noconftest",
                        "-p", "harness.checkout", "-p", "harness.stores", "-p", "no:cacheprovider", *suites],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert " passed" in r.stdout and " skipped" not in r.stdout, r.stdout[-2000:]
    assert sys.executable != python
