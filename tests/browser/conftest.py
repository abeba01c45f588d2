"""Every browser test runs twice: on the frontend ComfyUI pins (its requirements.txt) and on the
newest comfyui-frontend-package, which `./dev test` downloads and ComfyUI serves through
--front-end-root. Tests find the extension by its own data-testids and the host's public API."""

from __future__ import annotations

import json

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


@pytest.fixture(scope="session")
def aws_comfyui(frontend, moto_server, tmp_path_factory):
    """A designer's ComfyUI on its own folder store whose boto3 talks to moto, one per frontend: for the tests
    that need AWS from ComfyUI (Save Image (S3)) or change its configuration (Connect, a token). Each of
    those puts the configuration back after it (`aws_designer`)."""
    server = ComfyUI(tmp_path_factory.mktemp(f"aws-comfyui-{frontend}"), env=moto_server.env(),
                     extra_args=frontend_args(frontend)).start()
    yield server
    server.stop()


@pytest.fixture
def aws_designer(aws_comfyui):
    """aws_comfyui; whatever a test did to its config.json is undone and run after it (with the token the
    test left in the file, if it set one: the running configuration asks for it)."""
    path = aws_comfyui.user_dir / "__sagemaker" / "config.json"
    before = path.read_text() if path.exists() else None
    yield aws_comfyui
    try:
        token = json.loads(path.read_text()).get("token") if path.exists() else None
    except ValueError:
        token = None
    if before is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(before)
    r = aws_comfyui.client().put("/sagemaker/config", json={"changes": {}},
                                 headers={"X-SageMaker-Token": token} if token else {})
    assert r.status_code == 200, r.text
