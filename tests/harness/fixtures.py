"""What the tests install into their ComfyUI: a node pack and small model files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TEST_PACK = "sm_test_pack"
# folder -> files (name -> bytes). "shared.safetensors" is in two folders on purpose.
TEST_MODELS = {
    "checkpoints": {"tiny.safetensors": b"tiny checkpoint bytes"},
    "loras": {"style.safetensors": b"lora bytes", "shared.safetensors": b"shared lora", "sub/deep.safetensors": b"d"},
    "vae": {"shared.safetensors": b"shared vae"},
}


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=tests", "-c", "user.email=tests@localhost", "-c", "init.defaultBranch=main",
                    *args], cwd=cwd, check=True, capture_output=True)


def install_test_pack(base: Path) -> Path:
    """Copy the test pack into custom_nodes as a clean git checkout with an origin."""
    target = base / "custom_nodes" / TEST_PACK
    if target.exists():
        return target
    shutil.copytree(FIXTURES / TEST_PACK, target, ignore=shutil.ignore_patterns("__pycache__"))
    git(target, "init", "-q")
    git(target, "remote", "add", "origin", "https://example.invalid/sm_test_pack.git")
    (target / ".gitignore").write_text("__pycache__/\n")
    git(target, "add", "-A")
    git(target, "commit", "-q", "-m", "test pack")
    return target


def install_test_models(base: Path) -> None:
    for folder, files in TEST_MODELS.items():
        for name, data in files.items():
            path = base / "models" / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


def install_odd_packs(base: Path, elsewhere: Path) -> None:
    """A pack whose .git is broken, and a pack that is a symlink to a folder elsewhere."""
    broken = base / "custom_nodes" / "sm_broken_git"
    broken.mkdir(parents=True, exist_ok=True)
    (broken / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    (broken / ".git").mkdir(exist_ok=True)
    (broken / ".git" / "HEAD").write_text("ref: refs/heads/nowhere\n")
    linked = elsewhere / "sm_linked_pack"
    linked.mkdir(parents=True, exist_ok=True)
    (linked / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    link = base / "custom_nodes" / "sm_linked_pack"
    if not link.exists():
        link.symlink_to(linked, target_is_directory=True)
