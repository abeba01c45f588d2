"""Fixtures of the integration tests that several modules share."""

from __future__ import annotations

import pytest
from harness.aws_rig import AwsRig


@pytest.fixture(scope="session")
def v2(comfyui, local_environment):
    """The session's shared environment (tests/conftest.py) as the v2 tests use it: (ComfyUI client,
    environment, parameter template, base URL of its v2 surface)."""
    env = local_environment.name
    return comfyui.client(), env, local_environment.params, f"{comfyui.url}/sagemaker/v2/{env}"


@pytest.fixture(scope="session")
def aws_rig(moto_server, tmp_path_factory):
    """A ComfyUI on an S3 store on moto, SageMaker on moto, the runtime emulator and one worker behind the
    endpoints the tests publish (tests/harness/aws_rig.py): each test publishes its own templates and
    environments (unique names) and uses buckets of its own for anything else."""
    rig = AwsRig(moto_server, tmp_path_factory.mktemp("aws-rig"))
    try:
        yield rig.start()
    finally:
        rig.stop()
