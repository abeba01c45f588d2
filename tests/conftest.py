"""Fixtures shared by every level of the suite (see tests/harness/)."""

from __future__ import annotations

import uuid

import pytest
from harness import reaper, tiers
from harness.comfyui import ROOT, ComfyUI
from harness.envs import SharedEnvironment, manifest_uri, publish_environment, publish_shared_environment
from harness.fixtures import install_odd_packs, install_test_models, install_test_pack
from harness.loops import outside_playwrights_loop
from harness.worker import SharedWorker

pytest_plugins = ["harness.checkout", "harness.browser", "harness.stores", "harness.moto", "harness.groups"]


def pytest_configure(config):
    if tiers.is_fast():
        tiers.install_guard(ROOT)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    yield from outside_playwrights_loop(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    yield from outside_playwrights_loop(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield from outside_playwrights_loop(item, last=nextitem is None)


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
def local_environment(integration_comfyui) -> SharedEnvironment:
    """One environment on a local endpoint of the session's ComfyUI, deployed once (a worker and its ComfyUI
    cost seconds of CPU each). It hangs on integration_comfyui itself, never on `comfyui`, which the browser
    tier parametrizes by frontend: a session fixture on a parametrized one is made and torn down again per
    frontend, and the integration tests then got an environment of another ComfyUI. It carries the test pack,
    its lora and the extension's parameter nodes, so any test-pack prompt runs on it: a test binds its own
    template to it (`harness.envs.template_on`) or runs prompts on it by name, and releases what it holds. A
    test that stops, kills, restarts or watches an endpoint's cold start publishes its own."""
    client = integration_comfyui.client()
    shared = publish_shared_environment(client)
    try:
        yield shared
    finally:
        client.delete(f"/sagemaker/endpoints/{shared.name}")


WORKER_PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 4, "batch_size": 1, "color": 9}},
                 "2": {"class_type": "SMTestScale", "inputs": {"image": ["1", 0], "lora_name": "style.safetensors",
                                                               "factor": 0.5}},
                 "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "wk"}}}


@pytest.fixture(scope="session")
def worker_environment(integration_comfyui) -> tuple[str, str]:
    """An environment with the test pack and its lora (two blobs), published on the session's folder store
    without an endpoint: (its name, its manifest's URI), for worker processes the tests start themselves
    (on integration_comfyui itself, as local_environment)."""
    _, env, job = publish_environment(integration_comfyui.client(), WORKER_PROMPT)
    return env, manifest_uri(integration_comfyui, env, job["result"]["version"])


@pytest.fixture(scope="session")
def shared_worker(worker_environment, tmp_path_factory):
    """A worker of `worker_environment` for the modules that test the worker program (test_worker,
    test_worker_on_sagemaker, test_worker_doors, test_worker_cancels), with a secret and the settings of
    `SharedWorker.SETTINGS`. Each module takes it with `shared_worker.take()`."""
    shared = SharedWorker(worker_environment[1], lambda: tmp_path_factory.mktemp("shared-worker"), uuid.uuid4().hex)
    try:
        yield shared
    finally:
        shared.stop()
