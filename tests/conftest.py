"""Fixtures shared by every level of the suite (see tests/harness/)."""

from __future__ import annotations

import pytest
from harness.comfyui import ComfyUI
from harness.fixtures import install_odd_packs, install_test_models, install_test_pack

pytest_plugins = ["harness.browser", "harness.stores", "harness.moto"]


@pytest.fixture(scope="session")
def comfyui(tmp_path_factory):
    """A real ComfyUI with the extension, shared by the session's integration tests."""
    base = tmp_path_factory.mktemp("comfyui-base")
    install_test_pack(base)
    install_test_models(base)
    install_odd_packs(base, tmp_path_factory.mktemp("elsewhere"))
    server = ComfyUI(base).start()
    yield server
    server.stop()


@pytest.fixture
def client(comfyui):
    return comfyui.client()
