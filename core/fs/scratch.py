"""Temporary files and folders, named after the process that writes them, so that a sweeper can tell one a
live process is writing from one a killed process left, whatever its age.

A temporary name holds its owner, `<host>-<pid>-<start>-`: `host` a digest of the host name and the PID
namespace (two containers sharing a volume are two hosts), `start` the process's start time (Linux's
/proc/<pid>/stat; 0 where unknown). On the same host a sweeper judges the owner: dead when no process has that
pid or (where known) the one that has it started at another time; then the file goes, however young. A name
from another host (a folder store on a shared disk) or without an owner (an older version's) cannot be
judged: it goes once it is an hour old, as before.

`Scratch` is a folder of ours for what would otherwise go to the system's temporary folder (uploads being
received, packs being made for a publish, a blob being checked), so it is swept with the rest at start.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import time
import uuid
from pathlib import Path

UNKNOWN_AFTER_S = 3600.0
HIDDEN = ".tmp-"  # the prefix of a temporary file beside its destination (a store's, the extension's state)
OWNER = re.compile(r"([0-9a-f]{8})-([0-9]+)-([0-9]+)-")
_tags: dict[int, str] = {}  # per pid: a forked child is another owner


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), None if no such process or unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except FileNotFoundError:
        return None
    except OSError:
        return 0
    try:
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (ValueError, IndexError):
        return 0


def _host() -> str:
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return hashlib.sha256(f"{socket.gethostname()}|{namespace}".encode()).hexdigest()[:8]


def owner_tag() -> str:
    """This process as the owner of temporary files: `<host>-<pid>-<start>`."""
    pid = os.getpid()
    if pid not in _tags:
        _tags[pid] = f"{_host()}-{pid}-{_start_time(pid) or 0}"
    return _tags[pid]


def temp_name(prefix: str = "", suffix: str = "") -> str:
    """A unique temporary name that says who writes it: `<prefix><owner>-<random><suffix>`."""
    return f"{prefix}{owner_tag()}-{uuid.uuid4().hex[:12]}{suffix}"


def owner_alive(rest: str) -> bool | None:
    """Whether the owner named at the start of `rest` (a temporary name after its prefix) lives; None when
    that cannot be told (no owner in the name, another host, a system without process start times)."""
    match = OWNER.match(rest)
    if match is None or match.group(1) != owner_tag().split("-", 1)[0] or os.name == "nt":
        return None
    pid, start = int(match.group(2)), int(match.group(3))
    if pid == os.getpid():
        return start == int(owner_tag().rsplit("-", 1)[1])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists (another user's)
    if start == 0:
        return True
    now = _start_time(pid)
    if now is None:  # gone meanwhile
        return False
    return now in (0, start)  # 0: unknown; another start time: the pid was reused by another process


def sweep(folder: Path | str, prefixes: tuple[str, ...], recursive: bool = False,
          unknown_after: float | None = UNKNOWN_AFTER_S) -> list[str]:
    """Remove the temporary files and folders under `folder` named with one of `prefixes` whose owner is dead
    (any age), or that cannot be judged and are older than `unknown_after` s (None: never, where a name
    without an owner may not be ours). Returns their paths."""
    removed: list[str] = []
    cutoff = None if unknown_after is None else time.time() - unknown_after
    try:
        walk = os.walk(folder) if recursive else [next(os.walk(folder))]
    except StopIteration:  # no such folder
        return removed
    for dirpath, dirnames, filenames in walk:
        for name in [*filenames, *dirnames]:
            prefix = next((p for p in prefixes if name.startswith(p)), None)
            if prefix is None:
                continue
            path = os.path.join(dirpath, name)
            try:
                alive = owner_alive(name[len(prefix):])
                if alive or (alive is None and (cutoff is None or os.lstat(path).st_mtime >= cutoff)):
                    continue
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
                removed.append(path)
            except OSError:
                continue
        dirnames[:] = [d for d in dirnames if not any(d.startswith(p) for p in prefixes)]
    return removed


class Scratch:
    """A folder of ours for temporary files (instead of the system's): readable by this user only, each
    name saying its owner, swept at start (`sweep`)."""

    PREFIX = "tmp-"

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)

    def _ready(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.folder

    def file(self, what: str = "") -> tuple[int, str]:
        """(fd, path) of a new empty file, like tempfile.mkstemp."""
        path = self._ready() / temp_name(self.PREFIX, f".{what}" if what else "")
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600), str(path)

    def dir(self, what: str = "") -> str:
        """A new empty folder, like tempfile.mkdtemp."""
        path = self._ready() / temp_name(self.PREFIX, f".{what}" if what else "")
        path.mkdir(mode=0o700)
        return str(path)

    def sweep(self) -> list[str]:
        return sweep(self.folder, (self.PREFIX,))


def system() -> Scratch:
    """Where a caller given no Scratch of its own (a test, the CLI) puts one: the system's temporary folder,
    with the same owner-named, exclusively created names."""
    import tempfile

    return Scratch(tempfile.gettempdir())
