"""Fixtures shared by every level of the suite (see tests/harness/)."""

from __future__ import annotations

import pytest
from harness import reaper
from harness.comfyui import ComfyUI
from harness.envs import SharedEnvironment, publish_shared_environment
from harness.fixtures import install_odd_packs, install_test_models, install_test_pack

pytest_plugins = ["harness.browser", "harness.stores", "harness.moto"]


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


@pytest.fixture(scope="session")
def local_environment(comfyui) -> SharedEnvironment:
    """One environment on a local endpoint of the session's ComfyUI, deployed once (a worker and its ComfyUI
    cost seconds of CPU each). It carries the test pack, its lora and the extension's parameter nodes, so
    any test-pack prompt runs on it: a test binds its own template to it (`harness.envs.template_on`) or
    runs prompts on it by name, and releases what it holds. A test that stops, kills, restarts or watches
    an endpoint's cold start publishes its own."""
    client = comfyui.client()
    shared = publish_shared_environment(client)
    try:
        yield shared
    finally:
        client.delete(f"/sagemaker/endpoints/{shared.name}")
