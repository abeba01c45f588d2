"""Materialise an environment for the worker's ComfyUI: packs, models, Python packages.

Everything is fetched by digest into a cache that outlives the process (a
second start with a warm cache downloads nothing) and verified on arrival.
Node packs are extracted safely into the base directory's custom_nodes;
models are linked into its models folders, eagerly or, in lazy mode, just
before a prompt that references them (ComfyUI validates combo values against
files on disk, so they must be there before the prompt is submitted).

On an S3 store blobs come with ranged GETs in parallel (worker/fetch.py); each phase's time and bytes
go to the worker's cold start report (worker/coldstart.py). Blobs are fetched once per instance: every
ComfyUI of the worker shares the base directory's models and custom_nodes.

Python packages: the image provides torch, CUDA and ComfyUI's requirements;
the manifest's lock is compared with what the worker has. Pure-Python
packages it lacks are installed once into a layer keyed by the lock's digest
(reused by every later start); platform-specific ones that differ are
reported, not guessed at, since the designer's wheel may be for another OS.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..core.fs.files import read_regular
from ..core.fs.hashing import file_sha256
from ..core.packing import extract_archive
from ..core.records import ManifestContent, ModelEntry
from ..core.shapes import ShapeInvalid, validate
from ..core.store import KeyNotFound, blob_key
from ..core.worker_contract import LocalDisk
from ..stores import split_manifest_uri
from .coldstart import ColdStart, human_bytes
from .fetch import DEFAULT_PART, RangedFetch, concurrency_for, s3_client
from .volumes import Placement, free_bytes

log = logging.getLogger("comfyui_sagemaker.worker")
DIGEST_MARKER = ".sagemaker-digest"
SAFE_PART = re.compile(r"[^\x00/\\]+")
DIGEST = re.compile(r"[0-9a-f]{64}")
PACKAGE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!-]{0,200}")
# Where the worker's ComfyUI gets this extension (built in): no pack may take that folder.
EXTENSION_FOLDER = "comfyui-sagemaker"


class MaterialiseError(Exception):
    """The environment cannot be made ready (missing manifest, corrupt blob, unsafe name)."""


def safe_relative(path: str) -> PurePosixPath:
    p = PurePosixPath(path)
    if p.is_absolute() or not p.parts or any(part in ("..", ".") or not SAFE_PART.fullmatch(part) for part in p.parts):
        raise MaterialiseError(f"unsafe name in manifest: {path!r}")
    return p


@dataclass
class Report:
    downloaded_blobs: int = 0
    downloaded_bytes: int = 0
    packages_missing: list[str] = field(default_factory=list)
    packages_installed: list[str] = field(default_factory=list)
    packages_unavailable: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return dict(self.__dict__)


class Materialiser:
    def __init__(self, manifest_uri: str, cache_dir: Path, base_dir: Path, coldstart: ColdStart | None = None,
                 fetch_part: int = DEFAULT_PART, fetch_concurrency: int | None = None,
                 placement: Placement | None = None):
        self.store, self.manifest_key = split_manifest_uri(manifest_uri)
        self.cache = cache_dir
        self.base = base_dir
        self.report = Report()
        self.manifest: ManifestContent = {"custom_nodes": [], "models": []}  # until load_manifest
        # What the manifest says it is (shown in the worker's report; one written by hand may not say).
        self.name: str | None = None
        self.version: int | None = None
        self.coldstart = coldstart or ColdStart()
        self.fetch_part = fetch_part
        self.fetch_concurrency = fetch_concurrency or concurrency_for()
        self._lock = threading.Lock()
        self._blob_locks: dict[str, threading.Lock] = {}
        # Where the caches are (worker/volumes.py) and, once the manifest is read, what they need there.
        self.placement = placement
        self.disk: LocalDisk | None = placement.disk() if placement else None

    @property
    def environment(self) -> str:
        """The environment's name as the manifest's key has it (known before the manifest is read)."""
        parts = self.manifest_key.split("/")
        return parts[1] if len(parts) > 2 else "unknown"

    def load_manifest(self) -> ManifestContent:
        try:
            data = self.store.get(self.manifest_key).data
        except KeyNotFound:
            raise MaterialiseError(f"manifest not found: {self.manifest_key}") from None
        try:
            manifest = json.loads(data)
        except (ValueError, RecursionError) as err:
            raise MaterialiseError(f"manifest {self.manifest_key} is corrupt: not JSON ({err})") from None
        try:
            self.manifest = checked_manifest(manifest)
        except ShapeInvalid as err:
            raise MaterialiseError(f"manifest {self.manifest_key} is corrupt: {err.reason}") from None
        name, version = manifest.get("name"), manifest.get("version")
        self.name = name if isinstance(name, str) else None
        self.version = version if isinstance(version, int) and not isinstance(version, bool) else None
        return self.manifest

    def cached(self, sha256: str) -> bool:
        return isinstance(sha256, str) and bool(DIGEST.fullmatch(sha256)) and \
            (self.cache / "blobs" / "sha256" / sha256).exists()

    def blob(self, sha256: str, on_bytes=None) -> Path:
        """The verified local copy of a blob, downloaded once (concurrent asks for one blob wait for it)."""
        if not isinstance(sha256, str) or not DIGEST.fullmatch(sha256):
            raise MaterialiseError(f"bad digest {sha256!r}")
        path = self.cache / "blobs" / "sha256" / sha256
        with self._lock:
            lock = self._blob_locks.setdefault(sha256, threading.Lock())
        with lock:
            if path.exists():
                if not path.is_file():  # stat, as ComfyUI and the extraction will: a FIFO would hang them
                    raise MaterialiseError(f"cached blob {sha256} is not a regular file (a FIFO, device or socket "
                                           f"in {path.parent}): remove it")
                return path
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{sha256}.{uuid.uuid4().hex[:8]}.part")
            try:
                digest = self._download(blob_key(sha256), tmp, on_bytes)
            except KeyNotFound:
                tmp.unlink(missing_ok=True)
                raise MaterialiseError(f"blob {sha256} is missing from the store") from None
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            if digest != sha256:
                tmp.unlink(missing_ok=True)
                raise MaterialiseError(f"blob {sha256} is corrupt (its content does not match its digest)")
            with self._lock:
                self.report.downloaded_blobs += 1
                self.report.downloaded_bytes += tmp.stat().st_size
            os.replace(tmp, path)
            return path

    def _download(self, key: str, tmp: Path, on_bytes) -> str:
        """Fetch `key` to `tmp`; its sha256. S3: ranged GETs in parallel, hashed as they land."""
        on_s3 = self.store.s3_object(key)
        if on_s3 is not None:
            region, bucket, s3_key = on_s3
            return RangedFetch(s3_client(region, self.fetch_concurrency), bucket, s3_key, tmp, self.fetch_part,
                               self.fetch_concurrency, on_bytes).run()
        self.store.get_file(key, str(tmp), on_bytes)
        return file_sha256(tmp)

    def packs(self, on_bytes=None) -> None:
        root = self.base / "custom_nodes"
        root.mkdir(parents=True, exist_ok=True)
        for pack in self.manifest["custom_nodes"]:
            folder = safe_relative(pack["folder"])
            if len(folder.parts) != 1:
                raise MaterialiseError(f"unsafe pack folder {pack['folder']!r}")
            if folder.name.lower() == EXTENSION_FOLDER:
                raise MaterialiseError(f"pack folder {pack['folder']!r} would replace the worker's built-in "
                                       "comfyui-sagemaker; environments never carry this extension")
            target = root / folder.name
            marker = target / DIGEST_MARKER
            if marker.exists() and read_regular(marker) == pack["archive"]["sha256"].encode():
                continue
            archive = self.blob(pack["archive"]["sha256"], on_bytes)
            if target.is_symlink() or target.is_file():
                target.unlink()
            elif target.exists():
                shutil.rmtree(target)
            staging = root / f".{folder.name}.staging"
            shutil.rmtree(staging, ignore_errors=True)
            extract_archive(str(archive), str(staging))
            (staging / DIGEST_MARKER).write_text(pack["archive"]["sha256"])
            os.replace(staging, target)

    def model(self, entry: ModelEntry, on_bytes=None) -> None:
        dest = self.base / "models" / safe_relative(entry["folder"]) / safe_relative(entry["name"])
        blob = self.blob(entry["sha256"], on_bytes)
        if dest.is_symlink() and os.readlink(dest) == str(blob):
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink() or dest.exists():
            dest.unlink()
        dest.symlink_to(blob)

    def models_for(self, prompt: dict) -> None:
        """Lazy mode: fetch the models a prompt's inputs name before it is submitted."""
        values = {v for node in prompt.values() if isinstance(node, dict)
                  for v in (node.get("inputs") or {}).values() if isinstance(v, str)}
        for entry in self.manifest["models"]:
            if entry["name"] in values:
                self.model(entry)

    def packages(self, install: bool) -> list[str]:
        """Compare the lock with this Python; install missing pure-Python ones into a cached layer.
        Returns the layer folders to put on sys.path (PYTHONPATH) of ComfyUI."""
        have = {d.metadata["Name"].lower(): d.version for d in importlib.metadata.distributions()
                if "Name" in d.metadata and d.metadata["Name"]}
        wanted = self.manifest.get("python_packages") or []
        missing = [p for p in wanted if p["name"].lower() not in have]
        self.report.packages_missing = [f"{p['name']}=={p['version']}" for p in missing]
        portable = [p for p in missing if not p.get("platform_specific")]
        self.report.packages_unavailable = [f"{p['name']}=={p['version']} (platform-specific)"
                                            for p in missing if p.get("platform_specific")]
        if not portable or not install:
            return []
        lock = json.dumps(sorted((p["name"].lower(), p["version"]) for p in portable)).encode()
        layer = self.cache / "python-layers" / hashlib.sha256(lock).hexdigest()[:16]
        done = layer / ".complete"
        if not done.exists():
            specs = [f"{p['name']}=={p['version']}" for p in portable]
            r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(layer), *specs],
                               capture_output=True, text=True)
            if r.returncode != 0:
                self.report.packages_unavailable += [f"{s} (pip: {r.stderr.strip().splitlines()[-1:]})" for s in specs]
                return []
            done.write_text("\n".join(specs))
        self.report.packages_installed = done.read_text().splitlines()
        return [str(layer)]

    def _to_fetch(self, items: list[tuple[str, int | None]]) -> tuple[int, int]:
        """(count, bytes) of the blobs among `items` ((sha256, size)) not in the cache yet."""
        missing = {sha: size for sha, size in items if not self.cached(sha)}
        return len(missing), sum(size for size in missing.values() if size is not None)

    def needed_bytes(self) -> int:
        """What the manifest's blobs not cached yet will take: each model (lazy mode fetches them too, later),
        each pack archive twice (the archive is kept, and its extracted tree is about as large or larger)."""
        models = {m["sha256"]: m.get("size") or 0 for m in self.manifest["models"] if not self.cached(m["sha256"])}
        packs = {p["archive"]["sha256"]: p["archive"].get("size") or 0 for p in self.manifest["custom_nodes"]
                 if not self.cached(p["archive"]["sha256"])}
        return sum(models.values()) + 2 * sum(size for sha, size in packs.items() if sha not in models)

    def check_disk(self, phase: dict) -> None:
        """Refuse the start now, with the numbers, rather than with ENOSPC halfway through the models; the
        numbers go to the manifest's phase (`phase`) and the report's `disk`."""
        if self.placement is None:
            return
        needed, free, where = self.needed_bytes(), free_bytes(self.cache), self.placement.volume.candidate
        disk = self.disk = {**self.placement.disk(needed), "free_bytes": free}
        phase.update(disk_path=str(where), free_bytes=free, needed_bytes=needed)
        if needed > free:
            raise MaterialiseError(
                f"the environment needs {human_bytes(needed)} ({needed} bytes) of local disk but {where} "
                f"(the largest of the worker's local volumes: {', '.join(disk.get('candidates', {}))}) has "
                f"{human_bytes(free)} ({free} bytes) free; use an instance type with more instance storage, "
                "or an endpoint storage volume (VolumeSizeInGB), or fewer models in the environment")

    def run(self, models: str, install_packages: bool) -> list[str]:
        """Every phase of the start, timed in the cold start report."""
        cold = self.coldstart
        with cold.phase("manifest", "manifest read") as phase:
            self.load_manifest()
            phase["detail"] = (f"{len(self.manifest['custom_nodes'])} packs, {len(self.manifest['models'])} models, "
                               f"{len(self.manifest.get('python_packages') or [])} Python packages")
            self.check_disk(phase)
        packs = [(p["archive"]["sha256"], p["archive"].get("size")) for p in self.manifest["custom_nodes"]]
        count, total = self._to_fetch(packs)
        with cold.phase("packs", "packs fetched and extracted", count=len(packs), fetched=count) as phase:
            before = self.report.downloaded_bytes
            self.packs(cold.progress("packs", total) if total else None)
            phase["bytes"] = self.report.downloaded_bytes - before
        entries = self.manifest["models"]
        if models == "eager":
            count, total = self._to_fetch([(m["sha256"], m.get("size")) for m in entries])
            with cold.phase("models", "models fetched", count=len(entries), fetched=count) as phase:
                before = self.report.downloaded_bytes
                on_bytes = cold.progress("models", total) if total else None
                for entry in entries:
                    self.model(entry, on_bytes)
                phase["bytes"] = self.report.downloaded_bytes - before
                if self.store.kind == "s3" and count:
                    phase["detail"] = (f"ranged GETs, {self.fetch_concurrency} in parallel, "
                                       f"{self.fetch_part // (1024 * 1024)} MiB parts")
        else:
            cold.record("models", "models fetched", 0.0, count=len(entries), fetched=0,
                        detail="lazy: each is fetched before the first prompt that names it")
        with cold.phase("python_packages", "Python packages") as phase:
            layers = self.packages(install_packages)
            phase["detail"] = (f"{len(self.report.packages_installed)} installed, "
                               f"{len(self.report.packages_unavailable)} unavailable")
        return layers


def checked_manifest(m: object) -> ManifestContent:
    """What the worker makes of a manifest; ShapeInvalid saying what makes it unusable. Names and digests are
    checked again where they are used (safe_relative, blob)."""
    content = validate(ManifestContent, m)
    for i, package in enumerate(content.get("python_packages", [])):
        # They become pip arguments: a name like "--index-url=..." must never get there.
        if not (PACKAGE_PART.fullmatch(package["name"]) and PACKAGE_PART.fullmatch(package["version"])):
            raise ShapeInvalid(f"python_packages[{i}] needs a plain name and version")
    return content


def place_input(blob: Path, name: str, sha256: str, input_dir: Path) -> None:
    """Put a fetched input under the worker ComfyUI's input folder with the name the prompt uses.
    Called while the prompt holds the ComfyUI, so another prompt cannot swap the file meanwhile."""
    dest = input_dir / safe_relative(name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and dest.stat().st_size == blob.stat().st_size and file_sha256(dest) == sha256:
        return
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    shutil.copyfile(blob, tmp)
    os.replace(tmp, dest)
