"""Fixtures shared by every level of the suite (see tests/harness/)."""

from __future__ import annotations

import pytest
from harness import reaper, tiers
from harness.comfyui import ROOT, ComfyUI
from harness.fixtures import install_odd_packs, install_test_models, install_test_pack

pytest_plugins = ["harness.browser", "harness.stores", "harness.moto"]


def pytest_configure(config):
    if tiers.is_fast():
        tiers.install_guard(ROOT)


@pytest.fixture(scope="session", autouse=True)
def no_process_left():
    """Set up first, torn down last: every process the session started must be gone by then."""
    run_id = reaper.start()
    yield
    leaked = reaper.reap(run_id)
    assert not leaked, "the tests left processes running (killed now):\n  " + "\n  ".join(leaked)


@pytest.fixture(scope="session")
def integration_comfyui(tmp_path_factory):
    """A real ComfyUI with the extension, shared by the session's integration tests (and the
    browser tests on the pinned frontend)."""
    base = tmp_path_factory.mktemp("comfyui-base")
    install_test_pack(base)
    install_test_models(base)
    install_odd_packs(base, tmp_path_factory.mktemp("elsewhere"))
    server = ComfyUI(base).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def comfyui(integration_comfyui):
    return integration_comfyui


@pytest.fixture
def client(comfyui):
    return comfyui.client()
