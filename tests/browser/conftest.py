"""Every browser test runs twice: on the frontend ComfyUI pins (its requirements.txt) and on the
newest comfyui-frontend-package, which `./dev test` downloads and ComfyUI serves through
--front-end-root. Tests find the extension by its own data-testids and the host's public API."""

from __future__ import annotations

import pytest
from harness.browser import FRONTENDS, frontend_args
from harness.comfyui import ComfyUI
from harness.fixtures import install_odd_packs, install_test_models, install_test_pack


@pytest.fixture(scope="session", params=FRONTENDS)
def frontend(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def comfyui(request, frontend, tmp_path_factory):
    """The session's ComfyUI for the pinned frontend; a second one serving the newest frontend."""
    if frontend == "pinned":
        yield request.getfixturevalue("integration_comfyui")
        return
    base = tmp_path_factory.mktemp("comfyui-newest-frontend")
    install_test_pack(base)
    install_test_models(base)
    install_odd_packs(base, tmp_path_factory.mktemp("elsewhere"))
    server = ComfyUI(base, extra_args=frontend_args(frontend)).start()
    yield server
    server.stop()
