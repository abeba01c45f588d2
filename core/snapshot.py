"""A snapshot of this ComfyUI: versions, custom node packs, Python packages, models.

Listing is fast: models are listed with size and mtime, never hashed here
(core.fs.hashing does that on demand). A pack is identified the way
ComfyUI-Manager records it (registry id + version: `pyproject.toml` beside a
`.tracking` file) or by git remote + commit; `dirty` when it has uncommitted
changes or no git at all, and then only its content digest identifies it.
"""

from __future__ import annotations

import configparser
import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import model_files

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: registry identities are then read as git or content
    tomllib = None

DIGEST_IGNORED_DIRS = frozenset({".git", "__pycache__", ".dev", "node_modules", ".venv", ".pytest_cache"})
DIGEST_IGNORED_SUFFIXES = (".pyc", ".pyo")
# Never packed into an environment: the worker has this extension built in, and the Manager is a designer's tool.
BUILTIN_PACKS = frozenset({"comfyui-manager"})


@dataclass(frozen=True)
class SnapshotFacts:
    """What the ComfyUI face passes in (plain data)."""

    comfyui_version: str
    custom_node_dirs: tuple[str, ...]
    model_folders: Mapping[str, tuple[Iterable[str], Iterable[str]]]
    this_extension: str  # our own folder, so it is marked, not digested


def pack_files(root: str) -> list[tuple[str, str]]:
    """(relative path, absolute path) of a pack's files, sorted, caches and VCS data left out."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in DIGEST_IGNORED_DIRS)
        for name in filenames:
            if name.endswith(DIGEST_IGNORED_SUFFIXES):
                continue
            path = os.path.join(dirpath, name)
            out.append((os.path.relpath(path, root).replace(os.sep, "/"), path))
    return sorted(out)


_digest_cache: dict[str, tuple[tuple, str]] = {}
_digest_lock = threading.Lock()


def pack_digest(root: str) -> str:
    """sha256 over each file's relative path, kind and content (links by their target text).
    Cached in memory by the files' (path, size, mtime_ns), so an unchanged pack is not re-read."""
    files = pack_files(root)
    fingerprint = []
    for rel, path in files:
        st = os.lstat(path)
        fingerprint.append((rel, st.st_size, st.st_mtime_ns, st.st_mode))
    key = tuple(fingerprint)
    with _digest_lock:
        hit = _digest_cache.get(root)
    if hit and hit[0] == key:
        return hit[1]
    h = hashlib.sha256()
    for rel, path in files:
        h.update(rel.encode() + b"\0")
        if os.path.islink(path):
            h.update(b"link\0" + os.readlink(path).encode() + b"\0")
            continue
        fh = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                fh.update(chunk)
        h.update(b"file\0" + fh.digest())
    digest = h.hexdigest()
    with _digest_lock:
        _digest_cache[root] = (key, digest)
    return digest


def registry_identity(root: Path) -> dict | None:
    """ComfyUI-Manager's record of a registry install: pyproject.toml + .tracking."""
    if tomllib is None or not (root / "pyproject.toml").is_file() or not (root / ".tracking").exists():
        return None
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8")).get("project", {})
    except (OSError, ValueError):
        return None
    if not project.get("name"):
        return None
    return {"kind": "registry", "cnr_id": str(project["name"]).strip().lower(), "ver": str(project.get("version", ""))}


def _git(root: Path, *args: str) -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def git_identity(root: Path) -> tuple[dict | None, bool, str | None]:
    """(identity, dirty, problem). Reads .git itself for the URL; asks git for HEAD and status."""
    if not (root / ".git").exists():
        return None, True, None
    url = None
    config = root / ".git" / "config"
    if config.is_file():
        parser = configparser.ConfigParser(strict=False)
        try:
            parser.read(config, encoding="utf-8")
            url = parser.get('remote "origin"', "url", fallback=None)
        except configparser.Error:
            url = None
    commit = _git(root, "rev-parse", "--verify", "HEAD")
    if not commit:
        return None, True, "git metadata is broken (no HEAD commit); identified by content"
    status = _git(root, "status", "--porcelain", "--untracked-files=normal")
    dirty = status is None or status != ""
    return {"kind": "git", "url": url, "commit": commit}, dirty, None


def describe_pack(folder: str, root: Path, this_extension: str) -> dict:
    resolved = root.resolve()
    entry: dict = {"folder": folder, "path": str(root), "symlink": root.is_symlink()}
    if resolved == Path(this_extension).resolve():
        return {**entry, "builtin": True, "identity": {"kind": "this-extension"}, "dirty": False, "digest": None}
    if folder.lower() in BUILTIN_PACKS:
        entry["builtin"] = True
    identity = registry_identity(resolved)
    dirty = False
    problem = None
    if identity is None:
        identity, dirty, problem = git_identity(resolved)
    if identity is None:
        identity = {"kind": "content"}
    entry.update(identity=identity, dirty=dirty)
    if problem:
        entry["problem"] = problem
    try:
        entry["digest"] = pack_digest(str(resolved))
    except OSError as err:
        entry["digest"] = None
        entry["problem"] = f"could not read the pack: {err}"
    return entry


def custom_node_packs(dirs: Iterable[str], this_extension: str) -> list[dict]:
    packs = []
    for base in dirs:
        if not os.path.isdir(base):
            continue
        for name in sorted(os.listdir(base)):
            path = Path(base) / name
            if name.startswith(".") or name == "__pycache__" or name.endswith(".disabled"):
                continue
            if path.is_dir():  # a folder, or a symlink to one
                packs.append(describe_pack(name, path, this_extension))
            elif name.endswith(".py") and path.is_file():  # a single-file pack
                packs.append({"folder": name, "path": str(path), "symlink": path.is_symlink(),
                              "identity": {"kind": "content"}, "dirty": True,
                              "digest": hashlib.sha256(path.read_bytes()).hexdigest()})
    return packs


BINARY_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")


def package_lock() -> list[dict]:
    """Installed distributions (the first of a name on sys.path, as the import system finds it), each marked
    `platform_specific` when it ships compiled code (a wheel built for this OS and CPU, which the Linux x86_64
    endpoint may not be able to use). Kept while no folder on sys.path changes (an install or uninstall adds or
    removes a .dist-info folder, which changes its folder's mtime): reading every package's RECORD is about a
    second of each publish."""
    key = tuple((entry, _mtime(entry)) for entry in sys.path)
    if _lock_cache.get("key") != key:
        _lock_cache.update(key=key, lock=_read_package_lock())
    return [dict(entry) for entry in _lock_cache["lock"]]


_lock_cache: dict = {}


def _mtime(entry: str) -> int | None:
    try:
        return os.stat(entry or ".").st_mtime_ns
    except OSError:
        return None


def _read_package_lock() -> list[dict]:
    # One pass over sys.path: looking each name up again (distribution(name)) scanned every path entry per
    # package, seconds of a publish with a few hundred packages.
    seen: dict[str, dict] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] if "Name" in dist.metadata else None
        if not name or name.lower() in seen:
            continue
        files = dist.files or []
        binary = any(str(f).endswith(BINARY_SUFFIXES) or ".so." in str(f) for f in files)
        seen[name.lower()] = {"name": name, "version": dist.version, "platform_specific": binary}
    return sorted(seen.values(), key=lambda d: d["name"].lower())


def take(facts: SnapshotFacts) -> dict:
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = None
    index = model_files.scan(facts.model_folders)
    return {
        "comfyui_version": facts.comfyui_version,
        "python": platform.python_version(),
        "platform": {"system": platform.system(), "machine": platform.machine(), "sys_platform": sys.platform},
        "torch": torch_version,
        "custom_nodes": custom_node_packs(facts.custom_node_dirs, facts.this_extension),
        "python_packages": package_lock(),
        "models": [f.to_json() for folder in index.files.values() for f in folder.values()],
        "problems": index.problems,
    }
