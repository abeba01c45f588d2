"""The extension as users install it: its files copied (not linked) into a ComfyUI's custom_nodes,
run by a ComfyUI Python that has no `comfyui_sagemaker` package (`./dev test` builds that Python:
.dev/comfyui-venv), with install.py run the way ComfyUI-Manager runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from .comfyui import ROOT

# The packages install.py adds (and their own dependencies): removed first so it really installs them.
EXTENSION_REQUIREMENTS = ("boto3", "botocore", "s3transfer", "jmespath", "watchdog")


def user_python() -> str:
    path = os.environ.get("COMFYUI_USER_PYTHON") or str(ROOT / ".dev" / "comfyui-venv" / "bin" / "python")
    if not Path(path).exists():
        raise RuntimeError(f"no ComfyUI Python at {path}: run the tests with `./dev test` (it builds one) "
                           "or point COMFYUI_USER_PYTHON at a ComfyUI's Python without the dev install")
    return path


def clone_files() -> list[str]:
    """What a clone of this checkout holds: tracked files plus new ones git would add (not ignored)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         check=True, capture_output=True).stdout.decode()
    return [f for f in out.split("\0") if f and (ROOT / f).is_file()]


def copy_extension(custom_nodes: Path, folder: str) -> Path:
    target = custom_nodes / folder
    for rel in clone_files():
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest)
    return target


def registry_archive(dest: Path) -> Path:
    """The archive `comfy node publish` uploads, made by comfy-cli's own function (git-tracked files
    minus .comfyignore) from this checkout."""
    archive = dest / "node.zip"
    r = subprocess.run([sys.executable, "-c", "import sys; from comfy_cli.file_utils import zip_files; "
                        "zip_files(sys.argv[1])", str(archive)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and archive.exists(), r.stdout + r.stderr
    return archive


def registry_install(custom_nodes: Path, folder: str, archive: Path) -> Path:
    """What `comfy node install` (ComfyUI-Manager's cnr_install) does: extract into custom_nodes/<id>."""
    target = custom_nodes / folder
    with zipfile.ZipFile(archive) as z:
        z.extractall(target)
    return target


def run(cmd: list[str], cwd: Path | None = None, env: dict | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess:
    """`cmd` in this session's environment without its PYTHONPATH (which points at this checkout when the
    suite imports it from there instead of an installed package: a user's ComfyUI Python has none of it),
    plus `env`."""
    inherited = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(cmd, cwd=cwd, env={**inherited, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def manager_install(python: str, extension: Path) -> subprocess.CompletedProcess:
    """What ComfyUI-Manager does after a clone: `[sys.executable, "install.py"]` in the extension's folder."""
    return run([python, "install.py"], cwd=extension)


def forget_requirements(python: str) -> None:
    """Back to a ComfyUI Python without the extension's requirements."""
    r = run([python, "-m", "pip", "uninstall", "-y", "-q", *EXTENSION_REQUIREMENTS])
    assert r.returncode == 0, r.stderr


def has_package(python: str, name: str) -> bool:
    r = run([python, "-c", f"import importlib.util, sys; sys.exit(importlib.util.find_spec({name!r}) is None)"])
    return r.returncode == 0
