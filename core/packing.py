"""Node pack archives: made deterministically, extracted safely.

The same pack content always gives the same bytes (sorted entries, zeroed
times and owners, a gzip header without a timestamp), so an archive is a
content-addressed blob and an unchanged pack is never uploaded twice.
Extraction refuses absolute paths, `..`, links that point out of the target,
and anything but files, folders and in-tree links.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from .errors import SageMakerError
from .snapshot import pack_files


class UnsafeArchive(SageMakerError):
    """An archive entry would land outside its folder or is not a plain file, folder or in-tree link."""

    code = "unsafe_archive"


def _info(name: str, kind: bytes, size: int = 0, mode: int = 0o644, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode, info.linkname = kind, size, mode, linkname
    info.mtime = info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def make_archive(root: str, dest_dir: str) -> tuple[str, str, int]:
    """Archive the pack at `root` into `dest_dir`; return (path, sha256, size)."""
    fd, path = tempfile.mkstemp(prefix=".pack-", suffix=".tar.gz", dir=dest_dir)
    h = hashlib.sha256()

    class Hashing(io.RawIOBase):
        def __init__(self, f):
            self.f = f

        def writable(self) -> bool:
            return True

        def write(self, b) -> int:
            h.update(b)
            return self.f.write(b)

    with os.fdopen(fd, "wb") as raw:
        sink = Hashing(raw)
        with gzip.GzipFile(filename="", mode="wb", fileobj=sink, mtime=0, compresslevel=6) as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for rel, full in pack_files(root):
                    st = os.lstat(full)
                    if stat.S_ISLNK(st.st_mode):
                        tar.addfile(_info(rel, tarfile.SYMTYPE, linkname=os.readlink(full)))
                    elif stat.S_ISREG(st.st_mode):
                        mode = 0o755 if st.st_mode & 0o111 else 0o644
                        with open(full, "rb") as f:
                            tar.addfile(_info(rel, tarfile.REGTYPE, st.st_size, mode), f)
    return path, h.hexdigest(), os.path.getsize(path)


def _check_member(member: tarfile.TarInfo, target: Path) -> None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or member.name.startswith(("/", "\\")) or ".." in name.parts or "\\" in member.name:
        raise UnsafeArchive(f"archive entry {member.name!r} would land outside its folder")
    if member.isdev() or member.isfifo() or member.islnk():
        raise UnsafeArchive(f"archive entry {member.name!r} is a device, FIFO or hard link")
    if member.issym():
        link = PurePosixPath(member.linkname)
        resolved = os.path.normpath(os.path.join(target, str(name.parent), member.linkname))
        if link.is_absolute() or not (resolved == str(target) or resolved.startswith(str(target) + os.sep)):
            raise UnsafeArchive(f"archive link {member.name!r} -> {member.linkname!r} points outside its folder")


def extract_archive(archive: str, target: str) -> None:
    """Extract into `target` (created), refusing anything unsafe before writing a byte."""
    dest = Path(target).resolve()
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        for m in members:
            _check_member(m, dest)
        dest.mkdir(parents=True, exist_ok=True)
        # The 'data' filter (Python's own) checks again at write time, links included.
        tar.extractall(dest, members=members, filter="data")
