"""Where the worker keeps what grows (blobs, extracted packs, ComfyUI's user, input, output and temp folders):
the largest writable local volume among its candidates, found at start.

A SageMaker container's root file system is an overlay on the instance's root volume; the instance's own
storage (NVMe instance store, or the endpoint's storage volume) is mounted at /tmp inside the container
(SageMaker Developer Guide, "Host instance storage volumes"; `df` in aws/sagemaker-inference-toolkit#124).
So the default candidates are the settings' cache folder and /tmp: the cache folder wins on a tie and when both
are one file system, which keeps a machine with one disk (and a local endpoint) exactly as before. A tmpfs or
ramfs candidate is never chosen: models there would live in RAM.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..core.worker_contract import LocalDisk

DEFAULT_EXTRA = Path("/tmp")
FOLDER = "comfyui-sagemaker"  # on a volume other than the cache folder's: <volume>/comfyui-sagemaker/{cache,comfyui}
IN_MEMORY = {"tmpfs", "ramfs"}
MOUNTS = Path("/proc/self/mounts")
StatVfs = Callable[[str], os.statvfs_result]


@dataclass(frozen=True)
class Volume:
    candidate: Path  # as configured
    free_bytes: int  # for an unprivileged writer (f_bavail)
    total_bytes: int
    device: tuple[int, int]  # (st_dev, f_fsid): two candidates on one file system are one


@dataclass(frozen=True)
class Placement:
    cache_dir: Path
    base_dir: Path
    volume: Volume
    others: tuple[Volume, ...]  # the other usable candidates, for the report

    def disk(self, needed_bytes: int | None = None) -> LocalDisk:
        """The report's `disk`: where the caches went and what is free there."""
        out: LocalDisk = {"path": str(self.volume.candidate), "cache_dir": str(self.cache_dir),
                          "free_bytes": self.volume.free_bytes, "total_bytes": self.volume.total_bytes,
                          "candidates": {str(v.candidate): v.free_bytes for v in (self.volume, *self.others)}}
        if needed_bytes is not None:
            out["needed_bytes"] = needed_bytes
        return out


def existing(path: Path) -> Path:
    """`path`, or its nearest folder that exists (the cache folder is made later)."""
    for p in (path, *path.parents):
        if p.exists():
            return p
    return Path("/")


def fs_type(path: Path, mounts: str | None = None) -> str:
    """The file system type of the mount holding `path` (/proc/self/mounts; "" when unknown)."""
    if mounts is None:
        try:
            mounts = MOUNTS.read_text()
        except OSError:
            return ""
    best, kind = "", ""
    resolved = str(path.resolve())
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def measure(candidate: Path, statvfs: StatVfs | None = None, mounts: str | None = None) -> Volume | None:
    """The candidate's volume, or None when it cannot hold the caches (missing, read-only, not writable, RAM)."""
    here = existing(candidate)
    try:
        st = (statvfs or os.statvfs)(str(here))
        dev = here.stat().st_dev
    except OSError:
        return None
    if st.f_flag & os.ST_RDONLY or not os.access(here, os.W_OK | os.X_OK) or fs_type(here, mounts) in IN_MEMORY:
        return None
    return Volume(candidate, st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize, (dev, st.f_fsid))


def candidates_from(value: str, cache_dir: Path) -> list[Path]:
    """WORKER_LOCAL_VOLUMES ("/a:/b"; empty: the cache folder and /tmp). The cache folder always comes first."""
    listed = [Path(p) for p in value.split(":") if p.strip()] if value.strip() else [DEFAULT_EXTRA]
    return [cache_dir, *(p for p in listed if p != cache_dir)]


def choose(candidates: Iterable[Path], statvfs: StatVfs | None = None, mounts: str | None = None) -> list[Volume]:
    """The usable candidates, one per file system (the first named), the most free bytes first (a stable sort:
    on a tie the earlier candidate wins)."""
    seen: dict[tuple[int, int], Volume] = {}
    for c in candidates:
        v = measure(c, statvfs, mounts)
        if v is not None and v.device not in seen:
            seen[v.device] = v
    return sorted(seen.values(), key=lambda v: -v.free_bytes)


def place(cache_dir: Path, base_dir: Path, candidates: list[Path], statvfs: StatVfs | None = None,
          mounts: str | None = None) -> Placement | None:
    """The caches' folders on the largest volume; None when no candidate is usable (the settings stand, and
    the first write says why)."""
    volumes = choose(candidates, statvfs, mounts)
    if not volumes:
        return None
    best, others = volumes[0], tuple(volumes[1:])
    if best.candidate == cache_dir:
        return Placement(cache_dir, base_dir, best, others)
    root = best.candidate / FOLDER
    return Placement(root / "cache", root / "comfyui", best, others)


def free_bytes(path: Path, statvfs: StatVfs | None = None) -> int:
    st = (statvfs or os.statvfs)(str(existing(path)))
    return st.f_bavail * st.f_frsize
