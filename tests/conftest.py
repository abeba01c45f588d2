"""Fixtures shared by every level of the suite (see tests/harness/)."""

from __future__ import annotations

import pytest
from harness.comfyui import ComfyUI

pytest_plugins = ["harness.browser", "harness.stores"]


@pytest.fixture(scope="session")
def comfyui(tmp_path_factory):
    """A real ComfyUI with the extension, shared by the session's integration tests."""
    server = ComfyUI(tmp_path_factory.mktemp("comfyui-base")).start()
    yield server
    server.stop()


@pytest.fixture
def client(comfyui):
    return comfyui.client()
