"""Project-wide rules: layering, version, lint."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from harness.sources import source_files

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
    # __main__.py is the launcher that loads the folder under that name before importing from it.
    sources = source_files()
    assert any(rel == "core/executions.py" for rel, _ in sources)
    for rel, path in sources:
        if rel != "__main__.py":
            assert "comfyui_sagemaker" not in imports_of(path), rel


def test_version_matches_pyproject():
    from comfyui_sagemaker.core.version import __version__

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["version"] == __version__


def test_registry_metadata_passes_comfy_clis_own_validation():
    """`comfy node validate` is what `comfy node publish` runs before it uploads; its parser only
    warns about a bad license, classifier or version range, so a warning fails here."""
    comfy = Path(sys.executable).parent / "comfy"
    r = subprocess.run([str(comfy), "--skip-prompt", "--no-enable-telemetry", "node", "validate"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "All validation checks passed" in out and "Warning" not in out, out

    from comfy_cli.registry.config_parser import extract_node_configuration

    config = extract_node_configuration(str(ROOT / "pyproject.toml"))
    project, comfy_meta = config.project, config.tool_comfy
    assert project.name == "comfyui-sagemaker" and project.version and project.description
    assert project.license.text and project.urls.repository.startswith("https://")
    assert project.supported_os and project.supported_comfyui_version == ">=0.3.75"
    assert comfy_meta.publisher_id and comfy_meta.display_name
    # The Registry's dependencies are requirements.txt's (ComfyUI-Manager installs the latter).
    reqs = [ln.strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]
    assert sorted(project.dependencies) == sorted(reqs)


def test_requirements_are_light_and_unpinned():
    lines = [ln.strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    reqs = [ln for ln in lines if ln and not ln.startswith("#")]
    assert {re.split("[<>=~]", r)[0] for r in reqs} == {"boto3", "watchdog", "requests", "pydantic", "blake3"}
    assert not any("==" in r for r in reqs)
    # install.py reads them with its own small parser (it runs before any package is there).
    from comfyui_sagemaker.install import requirements

    assert [f"{n}>={b}" if b else n for n, b in requirements()] == reqs


def test_ruff_is_clean():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("how", [["-P", "-m", "comfyui_sagemaker"], [str(ROOT)]], ids=["package", "folder"])
def test_cli_help(how):
    r = subprocess.run([sys.executable, *how, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "check-name" in r.stdout
    r = subprocess.run([sys.executable, *how, "check-name", "template", "a_b"], capture_output=True, text=True)
    assert r.returncode == 1 and "invalid_name" in r.stderr


def test_the_checkout_tracks_no_symlink_that_leaves_it():
    """A symlink git tracks is its target's path: one to an absolute path or outside the checkout names a
    machine's folders and breaks every other clone (the JS tools' node_modules once went in that way)."""
    listed = subprocess.run(["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.fail(f"git ls-files failed: {listed.stderr}")
    leaving = []
    for line in listed.stdout.splitlines():
        mode, _, _, path = line.split(None, 3)
        if mode == "120000":  # a symlink
            target = (ROOT / path).parent / Path((ROOT / path).readlink())
            if Path((ROOT / path).readlink()).is_absolute() or ROOT not in target.resolve().parents:
                leaving.append(path)
    assert leaving == []
