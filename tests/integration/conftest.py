"""Fixtures of the integration tests that several modules share."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def v2(comfyui, local_environment):
    """The session's shared environment (tests/conftest.py) as the v2 tests use it: (ComfyUI client,
    environment, parameter template, base URL of its v2 surface)."""
    env = local_environment.name
    return comfyui.client(), env, local_environment.params, f"{comfyui.url}/sagemaker/v2/{env}"
