"""Project-wide rules: layering, version, lint."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_core_imports_no_aiohttp_boto3_or_comfyui():
    banned = {"aiohttp", "boto3", "botocore", "folder_paths", "comfy", "server", "nodes", "execution"}
    for path in (ROOT / "core").rglob("*.py"):
        assert not imports_of(path) & banned, f"{path.name} imports {imports_of(path) & banned}"


def test_extension_imports_are_relative():
    # ComfyUI loads the extension by folder path: an absolute import of our own package would fail.
    for path in ROOT.rglob("*.py"):
        if any(p in path.parts for p in (".dev", "tests", "tools", "bench")):
            continue
        assert "comfyui_sagemaker" not in imports_of(path), path


def test_version_matches_pyproject():
    from comfyui_sagemaker.core.version import __version__

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["version"] == __version__
    assert {"PublisherId", "DisplayName", "Icon"} <= set(meta["tool"]["comfy"])


def test_requirements_are_light_and_unpinned():
    lines = [ln.strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    reqs = [ln for ln in lines if ln and not ln.startswith("#")]
    assert {re.split("[<>=~]", r)[0] for r in reqs} == {"boto3", "watchdog", "requests"}
    assert not any("==" in r for r in reqs)


def test_ruff_is_clean():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_cli_help():
    r = subprocess.run([sys.executable, "-P", "-m", "comfyui_sagemaker", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "check-name" in r.stdout
    r = subprocess.run([sys.executable, "-P", "-m", "comfyui_sagemaker", "check-name", "template", "a_b"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "invalid_name" in r.stderr
