"""Node pack archives: made deterministically, extracted safely.

The same pack content always gives the same bytes (sorted entries, zeroed
times and owners, a gzip header without a timestamp), so an archive is a
content-addressed blob and an unchanged pack is never uploaded twice.

Extraction does not use tarfile's `extractall` (its "data" filter resolves
links with realpath(), which CVE-2025-4517 defeats with chains of links
longer than PATH_MAX). It reads every header first and refuses, before a byte
is written: absolute names, `..`, backslashes, duplicates, anything but
files, folders and links, anything under a link, links that are absolute,
leave the pack or pass through another link, and archives over the size and
entry caps. It then writes files and folders without following a link, and
the links last. On any failure the target is removed.

The headers are read as a stream that stops at the entry cap: every header
tarfile reads counts (the root folder's, pax and long-name ones too), and
tarfile is not left holding them (it keeps every header it reads).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
import tempfile
import unicodedata
import zlib
from collections.abc import Iterator

from .errors import SageMakerError
from .fs.files import open_regular
from .snapshot import pack_files


class UnsafeArchive(SageMakerError):
    """An archive entry would land outside its folder or is not a plain file, folder or in-tree link."""

    code = "unsafe_archive"


class BadArchive(UnsafeArchive):
    """The file is not a readable tar or tar.gz archive (corrupt, truncated or something else)."""

    code = "bad_archive"


MAX_BYTES = 8 << 30  # total uncompressed size of an archive's files
MAX_MEMBERS = 100_000
MAX_NAME_BYTES = 1024  # a member's name or a link's target
MAX_DEPTH = 64  # folders in a member's name
MAX_CHAIN = 8  # pax / long-name headers in front of one entry (tarfile reads a chain recursively)
_MAX_READ = 4 << 20  # tarfile reads a long-name or pax header in one piece: a huge one would fill memory
_MAX_TAIL = 1 << 20  # bytes allowed after the end-of-archive marker (tar pads to 10 KiB records)
_CHUNK = 1 << 20
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


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


def _shown(name: str) -> str:
    """A name for a message: hostile names can be kilobytes long."""
    return repr(name if len(name) <= 120 else f"{name[:60]}...{name[-50:]}")


def _check_text(text: str, what: str) -> None:
    if "\\" in text:
        raise UnsafeArchive(f"{what} contains a backslash")
    if "\0" in text:
        raise UnsafeArchive(f"{what} contains a NUL byte")
    try:
        size = len(os.fsencode(text))
    except UnicodeError:
        raise UnsafeArchive(f"{what} is not a valid file name") from None
    if size > MAX_NAME_BYTES:
        raise UnsafeArchive(f"{what} is too long ({size} bytes, at most {MAX_NAME_BYTES})")


def _check_member(member: tarfile.TarInfo) -> tuple[str, ...]:
    """The member's path as parts, if its name and kind are acceptable on their own (its place among the
    other members is judged by `_plan`). An empty tuple is the archive's root folder (`./`)."""
    name = member.name
    if name.startswith("/"):
        raise UnsafeArchive(f"archive entry {_shown(name)} has an absolute name")
    _check_text(name, f"archive entry {_shown(name)}")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchive(f"archive entry {_shown(name)} contains '..' and would land outside its folder")
    if len(parts) > MAX_DEPTH:
        raise UnsafeArchive(f"archive entry {_shown(name)} is too deep ({len(parts)} levels, at most {MAX_DEPTH})")
    if member.islnk():
        raise UnsafeArchive(f"archive entry {_shown(name)} is a hard link")
    if member.ischr() or member.isblk():
        raise UnsafeArchive(f"archive entry {_shown(name)} is a device")
    if member.isfifo():
        raise UnsafeArchive(f"archive entry {_shown(name)} is a FIFO")
    if member.issparse():  # never made by make_archive; tarfile would expand its holes
        raise UnsafeArchive(f"archive entry {_shown(name)} is a sparse file")
    if member.type not in (*_FILE_TYPES, tarfile.DIRTYPE, tarfile.SYMTYPE):
        raise UnsafeArchive(f"archive entry {_shown(name)} is not a file, folder or link (tar type {member.type!r})")
    if not parts and not member.isdir():
        raise UnsafeArchive(f"archive entry {_shown(name)} has no name")
    return parts


def _fold(parts: tuple[str, ...] | list[str]) -> str:
    # Links are matched as a case-insensitive, normalising file system (macOS, Windows) would match them.
    return unicodedata.normalize("NFC", "/".join(parts)).casefold()


def _check_link(member: tarfile.TarInfo, parts: tuple[str, ...], links: set[str]) -> None:
    """Walk the link's target from its folder: it must stay in the pack and never step through a link of
    the archive (so `..` after a component always means the real parent, whatever the depth)."""
    what = f"archive link {_shown(member.name)} -> {_shown(member.linkname)}"
    target = member.linkname
    if not target:
        raise UnsafeArchive(f"{what} has an empty target")
    if target.startswith("/"):
        raise UnsafeArchive(f"{what} has an absolute target")
    _check_text(target, what)
    walked = list(parts[:-1])
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not walked:
                raise UnsafeArchive(f"{what} points outside its folder")
            walked.pop()
            continue
        walked.append(part)
        if _fold(walked) in links:
            raise UnsafeArchive(f"{what} goes through the link {_shown('/'.join(walked))}")


def _counting(max_members: int) -> type[tarfile.TarInfo]:
    """A TarInfo class for one archive that counts every header tarfile reads, the extended ones too, and
    stops the reading at the cap (before any entry is judged or skipped) or at a chain over MAX_CHAIN."""
    count = depth = 0

    class Counted(tarfile.TarInfo):
        @classmethod
        def fromtarfile(cls, tar: tarfile.TarFile) -> Counted:
            nonlocal count, depth
            depth += 1
            try:
                if depth > MAX_CHAIN:
                    raise UnsafeArchive(f"archive has an entry with more than {MAX_CHAIN} extended headers")
                member = super().fromtarfile(tar)
            finally:
                depth -= 1
            count += 1  # a header read whole (the end-of-archive block is not one)
            if count > max_members:
                raise UnsafeArchive(f"archive has more than {max_members} entries (extended headers count)")
            return member

    return Counted


def _plan(tar: tarfile.TarFile, max_bytes: int, max_members: int) -> list[tuple[tarfile.TarInfo, tuple[str, ...]]]:
    """Every member with its path parts, judged from the headers alone (nothing is written yet). The
    header count is capped as they are read (_counting); this counts the entries kept."""
    entries: list[tuple[tarfile.TarInfo, tuple[str, ...]]] = []
    seen: set[tuple[str, ...]] = set()
    total = 0
    # Headers are read one by one, so the caps stop a bomb before its data is read; tarfile's own list
    # of the headers it read is emptied as it goes (it would hold every one).
    while (member := tar.next()) is not None:
        tar.members.clear()  # type: ignore[attr-defined]  # typeshed omits TarFile.members (a plain list)
        parts = _check_member(member)
        if not parts:
            continue
        if parts in seen:
            raise UnsafeArchive(f"archive entry {_shown(member.name)} appears twice")
        seen.add(parts)
        if member.type in _FILE_TYPES:
            total += member.size
            if total > max_bytes:
                raise UnsafeArchive(f"archive expands to more than {max_bytes} bytes (at entry {_shown(member.name)})")
        entries.append((member, parts))
    links = {_fold(parts) for member, parts in entries if member.issym()}
    files = {parts for member, parts in entries if member.type in _FILE_TYPES}
    for member, parts in entries:
        for i in range(1, len(parts)):
            parent = _shown("/".join(parts[:i]))
            if _fold(parts[:i]) in links:
                raise UnsafeArchive(f"archive entry {_shown(member.name)} lies under the link {parent}")
            if parts[:i] in files:
                raise UnsafeArchive(f"archive entry {_shown(member.name)} lies under the file {parent}")
        if member.issym():
            _check_link(member, parts, links)
    return entries


def _check_end(tar: tarfile.TarFile) -> None:
    """tarfile takes a truncated or garbled header for the end of the archive, and never reads a gzip
    stream to its CRC: insist on the end-of-archive marker and read what follows it."""
    tar.fileobj.seek(tar.offset)
    if tar.fileobj.read(tarfile.BLOCKSIZE) != tarfile.NUL * tarfile.BLOCKSIZE:
        raise BadArchive(f"archive is truncated or garbled after {tar.offset} bytes")
    tail = 0
    while chunk := tar.fileobj.read(_CHUNK):
        tail += len(chunk)
        if tail > _MAX_TAIL:
            raise UnsafeArchive(f"archive has more than {_MAX_TAIL} bytes after its end")


class _Bounded:
    """The (decompressed) tar stream, refusing the one-piece read of a huge header."""

    def __init__(self, stream: io.BufferedIOBase):
        self.stream = stream

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > _MAX_READ:
            raise UnsafeArchive(f"archive has a header larger than {_MAX_READ} bytes")
        return self.stream.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.stream.seek(offset, whence)

    def tell(self) -> int:
        return self.stream.tell()

    def write(self, data: bytes) -> int:
        raise io.UnsupportedOperation("an archive is only read here")

    def close(self) -> None:
        """The stream is the caller's to close."""


@contextlib.contextmanager
def _open(archive: str, max_members: int) -> Iterator[tarfile.TarFile]:
    with open_regular(archive, f"archive {os.path.basename(archive)}") as raw, contextlib.ExitStack() as stack:
        stream: io.BufferedIOBase = raw
        if raw.read(2) == b"\x1f\x8b":
            stream = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
        raw.seek(0)
        with tarfile.open(fileobj=_Bounded(stream), mode="r:", tarinfo=_counting(max_members)) as tar:
            yield tar


class _Writer:
    """Writes planned members under `dest`, which it found empty: never through a link, never past a
    member's declared size or the archive's cap."""

    def __init__(self, tar: tarfile.TarFile, dest: str, max_bytes: int):
        self.tar, self.dest, self.left = tar, dest, max_bytes
        self.folders: set[tuple[str, ...]] = set()  # checked on disk: real folders, made by us

    def folder(self, parts: tuple[str, ...], member: tarfile.TarInfo) -> str:
        path = self.dest
        for i, part in enumerate(parts, 1):
            path = os.path.join(path, part)
            if parts[:i] in self.folders:
                continue
            with contextlib.suppress(FileExistsError):
                os.mkdir(path, 0o755)
            if not stat.S_ISDIR(os.lstat(path).st_mode):  # lstat: a link is not a folder
                raise UnsafeArchive(f"archive entry {_shown(member.name)} would be written through {_shown(path)}, "
                                    "which is not a folder")
            os.chmod(path, 0o755)  # mkdir's mode is reduced by the umask
            self.folders.add(parts[:i])
        return path

    def file(self, member: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        path = os.path.join(self.folder(parts[:-1], member), parts[-1])
        mode = 0o755 if member.mode & 0o111 else 0o644  # the executable bit only: no setuid, no odd modes
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode)
        except FileExistsError:
            raise UnsafeArchive(f"archive entry {_shown(member.name)} collides with another entry") from None
        with os.fdopen(fd, "wb") as out:
            os.chmod(fd if os.chmod in os.supports_fd else path, mode)
            source = self.tar.extractfile(member)
            assert source is not None  # a regular file always has a reader
            remaining = member.size
            while remaining:
                chunk = source.read(min(_CHUNK, remaining))
                if not chunk:
                    raise BadArchive(f"archive is truncated inside entry {_shown(member.name)}")
                self.left -= len(chunk)
                if self.left < 0:
                    raise UnsafeArchive(f"archive expands beyond its size cap (at entry {_shown(member.name)})")
                out.write(chunk)
                remaining -= len(chunk)

    def link(self, member: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        path = os.path.join(self.folder(parts[:-1], member), parts[-1])
        try:
            os.symlink(member.linkname, path)
        except FileExistsError:
            raise UnsafeArchive(f"archive link {_shown(member.name)} collides with another entry") from None


def _make_target(dest: str) -> bool:
    """Create `dest` (True) or accept an existing empty real folder (False)."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    try:
        os.mkdir(dest, 0o755)
        return True
    except FileExistsError:
        st = os.lstat(dest)
        if not stat.S_ISDIR(st.st_mode) or os.listdir(dest):
            raise FileExistsError(f"{dest} exists and is not an empty folder") from None
        return False


def _remove(dest: str, created: bool) -> None:
    if created:
        shutil.rmtree(dest, ignore_errors=True)  # rmtree removes links, never what they point to
        return
    for entry in os.scandir(dest):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def extract_archive(archive: str, target: str, *, max_bytes: int = MAX_BYTES, max_members: int = MAX_MEMBERS) -> None:
    """Extract `archive` (tar or tar.gz) into `target`, created (or an existing empty folder).

    Raises UnsafeArchive (naming the entry) for anything unsafe or over the caps, BadArchive for a file
    that is not a readable archive; either way nothing is left in `target`.
    """
    # The target's parent is resolved (the caller chose it); the target itself is never followed.
    absolute = os.path.abspath(target)
    dest = os.path.join(os.path.realpath(os.path.dirname(absolute)), os.path.basename(absolute))
    created: bool | None = None
    try:
        with _open(archive, max_members) as tar:
            entries = _plan(tar, max_bytes, max_members)
            _check_end(tar)
            created = _make_target(dest)
            writer = _Writer(tar, dest, max_bytes)
            for member, parts in entries:
                if member.isdir():
                    writer.folder(parts, member)
                elif not member.issym():
                    writer.file(member, parts)
            for member, parts in entries:  # last: no file or folder is ever written after a link exists
                if member.issym():
                    writer.link(member, parts)
    except BaseException as err:
        if created is not None:
            _remove(dest, created)
        if isinstance(err, _READ_ERRORS):
            raise BadArchive(f"{os.path.basename(archive)} is not a readable tar.gz archive: {err}") from None
        raise
