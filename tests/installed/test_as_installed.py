"""The extension as users install it (README "Install into your own ComfyUI"): the Comfy Registry's
archive (made by comfy-cli from this checkout) extracted into a ComfyUI's custom_nodes, or the files
of a git clone copied there; install.py run the way ComfyUI-Manager runs it; ComfyUI started by a
Python that has no package named `comfyui_sagemaker` (a decoy of that name even sits on its
PYTHONPATH, as another copy or an old install would). Then the artist flow on a local endpoint
and the admin CLI, exactly as a user types them."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from pathlib import Path

import pytest
import requests
from harness.comfyui import ComfyUI
from harness.envs import unique, wait_endpoint, wait_execution, wait_task
from harness.gateway import Gateway
from harness.images import invert_prompt, pixels, png
from harness.installed import (
    copy_extension,
    forget_requirements,
    has_package,
    manager_install,
    registry_archive,
    registry_install,
    run,
    user_python,
)

pytestmark = pytest.mark.installed

FOLDER = "comfyui-sagemaker"  # what `comfy node install` and README's `git clone ... comfyui-sagemaker` make


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    return registry_archive(tmp_path_factory.mktemp("registry"))


@pytest.fixture(scope="module")
def python() -> str:
    py = user_python()
    assert not has_package(py, "comfyui_sagemaker"), "the user's ComfyUI Python must not have the dev install"
    return py


@pytest.fixture(scope="module")
def decoy(tmp_path_factory) -> Path:
    """A package named comfyui_sagemaker that must never be imported: code that looks the name up
    in sys.path instead of loading its own folder would run this."""
    root = tmp_path_factory.mktemp("decoy")
    (root / "comfyui_sagemaker").mkdir()
    (root / "comfyui_sagemaker" / "__init__.py").write_text(
        "raise ImportError('the decoy comfyui_sagemaker was imported instead of the extension folder')\n")
    return root


@pytest.fixture(scope="module")
def installed(python, decoy, archive, tmp_path_factory):
    base = tmp_path_factory.mktemp("installed") / "base"
    extension = registry_install(base / "custom_nodes", FOLDER, archive)
    assert not (extension / "tests").exists()  # .comfyignore keeps the suite out of the Registry's archive
    forget_requirements(python)
    first = manager_install(python, extension)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "to install:" in first.stdout and "installed boto3" in first.stdout, first.stdout
    assert has_package(python, "boto3") and has_package(python, "watchdog")
    again = manager_install(python, extension)  # idempotent: nothing left to do
    assert again.returncode == 0 and "already met" in again.stdout, again.stdout + again.stderr
    server = ComfyUI(base, python=python, env={"PYTHONPATH": str(decoy)}).start()
    yield server, extension
    server.stop()


def test_the_extension_loads_from_its_copied_folder(installed):
    server, extension = installed
    assert not extension.is_symlink()
    timings = [line for line in server.log().splitlines() if line.rstrip().endswith(str(extension))]
    assert timings and not any("IMPORT FAILED" in line for line in timings), server.log()[-3000:]
    health = server.client().get("/sagemaker/health").json()
    assert health["ok"] and health["missing_requirements"] == []
    assert "SageMakerTemplateOutput" in server.client().get("/object_info").json()


def test_artist_flow_on_a_local_endpoint(installed):
    """Template -> environment with a local endpoint -> InService -> Prompt on AWS -> pixels via /view.
    The image reaches the endpoint from the input folder by itself."""
    server, _ = installed
    client = server.client()
    image = f"in{uuid.uuid4().hex[:8]}.png"
    (server.input_dir / image).write_bytes(png(6, 4, (10, 100, 200)))  # a user drops a file into input/
    prompt = invert_prompt(image, prefix="installed")
    template, env = unique("T"), unique("E")
    r = client.post("/sagemaker/templates", json={"name": template, "workflow": prompt, "prompt": prompt})
    assert r.status_code == 201, r.text
    r = client.post("/sagemaker/environments", json={"name": env, "templates": [template],
                                                      "endpoint": {"kind": "local"}})
    assert r.status_code == 202, r.text
    task = wait_task(client, r.json()["task"]["id"])
    assert task["state"] == "succeeded", task
    try:
        assert client.put(f"/sagemaker/templates/{template}", json={"environment": env}).status_code == 200
        endpoint = wait_endpoint(client, env, timeout=300)
        logs = client.get(f"/sagemaker/endpoints/{env}/logs").json()["logs"]
        assert endpoint["state"] == "InService", f"{endpoint}\n{logs}"
        assert "decoy" not in logs
        r = client.post("/sagemaker/executions", json={"prompt": prompt, "template": template,
                                                       "client_id": uuid.uuid4().hex})
        assert r.status_code == 202, r.text
        record = wait_execution(client, r.json()["execution_id"])
        assert record["state"] == "succeeded", record
        out = record["outputs"]["3"]["images"][0]
        data = client.view(out["filename"], out["subfolder"], "output")
        assert all(abs(a - b) <= 1 for px in pixels(data) for a, b in zip(px, (245, 155, 55), strict=True))
    finally:
        client.delete(f"/sagemaker/endpoints/{env}")


def test_admin_cli_by_the_folder(installed, python, decoy):
    """The command README documents for an installed ComfyUI, run from the ComfyUI folder."""
    server, extension = installed
    comfy_root = server.base  # the folder that holds custom_nodes/ and user/
    cli = ["custom_nodes/" + extension.name]

    def run_cli(*args: str):
        return run([python, *cli, *args], cwd=comfy_root, env={"PYTHONPATH": str(decoy)})

    r = run_cli("--help")
    assert r.returncode == 0, r.stderr
    assert f"python custom_nodes/{extension.name}" in r.stdout and "snapshot" in r.stdout
    r = run_cli("config")
    assert r.returncode == 0, r.stderr
    config = json.loads(r.stdout)
    assert config["store"] == "folder" and config["config_dir"] == str(server.user_dir / "__sagemaker")
    assert config["token"] is False
    r = run_cli("snapshot", "--url", server.url, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["comfyui_version"]
    r = run_cli("check-name", "template", "a_b")
    assert r.returncode == 1 and "invalid_name" in r.stderr and "Traceback" not in r.stderr


def test_the_gateway_by_the_folder(installed, python, decoy, tmp_path):
    """README's gateway command on an installed copy: its ComfyUI's configuration found by itself, the token
    asked on every route, a clean stop."""
    server, extension = installed
    gateway = Gateway(tmp_path, env={"PYTHONPATH": str(decoy)}, python=python,
                      extension=Path("custom_nodes") / extension.name, cwd=server.base, drain_seconds=5).start()
    try:
        assert requests.get(gateway.url + "/health", timeout=10).json()["ok"] is True
        assert requests.get(gateway.url + "/sagemaker/templates", timeout=10).status_code == 403
        assert gateway.get("/sagemaker/templates").status_code == 200
    finally:
        assert gateway.stop() == 0, gateway.log()
    log = gateway.log()
    assert str(server.user_dir / "__sagemaker") in log and "Traceback" not in log, log


def test_aws_setup_by_the_folder_uploads_this_copys_source(installed, python, decoy, moto_server, tmp_path):
    """`aws setup` from an installed copy (no git: the Registry's archive) on moto: the stack, the source the
    image build reads (this copy's files, without what .dockerignore leaves out), the configuration."""
    server, extension = installed
    env = {"PYTHONPATH": str(decoy), **moto_server.env(), "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
           "AWS_CONFIG_FILE": "/dev/null"}
    config_dir = tmp_path / "config"
    r = run([python, "custom_nodes/" + extension.name, "aws", "setup", "--stack", "cs-installed", "--region",
             "us-east-1", "--prefix", "p", "--config-dir", str(config_dir), "--no-build"], cwd=server.base, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    config = json.loads((config_dir / "config.json").read_text())
    assert config["store"] == "s3" and config["s3_prefix"] == "p"
    body = moto_server.client("s3").get_object(Bucket=config["s3_bucket"], Key="p/source/comfyui-sagemaker.zip")
    names = set(zipfile.ZipFile(io.BytesIO(body["Body"].read())).namelist())
    assert {"worker/Dockerfile", "pyproject.toml", "__main__.py", "install.py"} <= names, sorted(names)
    assert not [n for n in names if n.startswith("tests/") or "__pycache__" in n or n.endswith(".pyc")]
    r = run([python, "custom_nodes/" + extension.name, "aws", "setup", "--stack", "cs-installed", "--region",
             "us-east-1", "--parameter", "Colour=blue"], cwd=server.base, env=env)
    assert r.returncode == 1 and "the stack has no parameter Colour" in r.stderr and "Traceback" not in r.stderr


def test_two_copies_under_two_names_the_second_refuses_naming_the_first(python, archive, tmp_path):
    """A git clone under the repository's own name beside the Registry's copy: one loads, the other
    says which one it gave way to."""
    base = tmp_path / "base"
    copies = [copy_extension(base / "custom_nodes", "ComfyUI-SageMaker"),
              registry_install(base / "custom_nodes", FOLDER, archive)]
    server = ComfyUI(base, python=python, env={"PYTHONPATH": ""}).start()  # nothing of the checkout's on its path
    try:
        assert server.client().get("/sagemaker/health").json()["ok"]
        log = server.log()
        # ComfyUI's own report of a custom node that failed to import, with our message.
        refusals = [line for line in log.splitlines() if line.startswith("Cannot import") and "is already loaded from"
                    in line]
        assert refusals, log[-3000:]
        loaded = next(str(c) for c in copies if f"already loaded from {c}" in refusals[0])
        second = next(str(c) for c in copies if str(c) != loaded)
        assert f"this second copy in {second}" in refusals[0]
        # Exactly one sidebar script: the second copy registered no web folder.
        scripts = [s for s in server.client().get("/extensions").json() if s.endswith("/js/sagemaker.js")]
        assert scripts == [f"/extensions/{Path(loaded).name}/js/sagemaker.js"], scripts
    finally:
        server.stop()


def test_install_without_pip_or_offline_says_so_and_fails(tmp_path):
    ext = copy_extension(tmp_path, FOLDER)
    bare = tmp_path / "nopip"
    assert run(["python3", "-m", "venv", "--without-pip", str(bare)]).returncode == 0
    r = run([str(bare / "bin" / "python"), "install.py"], cwd=ext, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode != 0 and "has no pip" in r.stdout and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert "installed boto3" not in r.stdout

    offline = tmp_path / "offline"
    assert run(["python3", "-m", "venv", str(offline)]).returncode == 0
    r = run([str(offline / "bin" / "python"), "install.py"], cwd=ext,
            env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "", "PIP_CONFIG_FILE": "/dev/null"})
    assert r.returncode != 0, r.stdout + r.stderr
    assert "NOT installed" in r.stdout and "boto3" in r.stdout and "installed boto3" not in r.stdout, r.stdout
