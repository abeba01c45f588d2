"""The worker gives up root before it does anything else.

SageMaker starts an inference container as root and documents that it expects to ("SageMaker AI expects all
containers to run with root users [...] users that do not have root-level access can cause permissions
issues": Developer Guide, Custom Inference Code with Hosting Services), so the image has no USER. What runs
there is untrusted in part: an environment's custom nodes are code from anywhere. So `worker serve`, started
as root with WORKER_USER set (worker/Dockerfile), first makes the folders it will write that user's: the
cache and base folders, and a folder on each local volume SageMaker mounts (/tmp: the instance's storage),
whose root is given the /tmp convention (sticky, writable by all) when its mount lacks it; then it drops
root for good: supplementary groups, group, user. Everything after, the worker's downloads and each
ComfyUI, runs as that user. A worker not started as root (local endpoints) changes nothing.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

from .settings import WorkerSettings
from .volumes import FOLDER, candidates_from

STICKY_TMP = 0o1777


class PrivilegeError(RuntimeError):
    """WORKER_USER names no user of the image, or root could not be given up."""


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str


def lookup(name: str) -> Account:
    import pwd

    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise PrivilegeError(f"WORKER_USER={name!r} is not a user of this image (worker/Dockerfile makes it)") from None
    return Account(name, pw.pw_uid, pw.pw_gid, pw.pw_dir)


def writable_folders(settings: WorkerSettings) -> tuple[list[Path], list[Path]]:
    """(folders to own, volume roots that must let the user in): what worker/volumes.py may place caches in."""
    owned, roots = [settings.cache_dir, settings.base_dir], []
    for volume in candidates_from(settings.local_volumes, settings.cache_dir)[1:]:
        if volume.is_dir() and os.access(volume, os.W_OK):
            owned.append(volume / FOLDER)
            roots.append(volume)
    return owned, roots


def drop(settings: WorkerSettings, environ: MutableMapping[str, str] | None = None, ops=os) -> Account | None:
    """Own the worker's folders as WORKER_USER, then become it; None when there is nothing to drop."""
    env = os.environ if environ is None else environ
    name = env.get("WORKER_USER", "")
    if not name or sys.platform == "win32" or ops.geteuid() != 0:  # not root (or Windows): nothing to give up
        return None
    account = lookup(name)
    owned, roots = writable_folders(settings)
    for root in roots:
        mode = stat.S_IMODE(root.stat().st_mode)
        if mode & 0o003 != 0o003:  # others may not write and enter: the user could not use the volume
            ops.chmod(root, mode | STICKY_TMP)
    for folder in owned:
        folder.mkdir(parents=True, exist_ok=True)
        ops.chown(folder, account.uid, account.gid)
    ops.setgroups([])
    ops.setgid(account.gid)
    ops.setuid(account.uid)
    if ops.geteuid() == 0 or ops.getuid() == 0:
        raise PrivilegeError(f"still root after becoming {name}: refusing to run the environment's code as root")
    env.update(HOME=account.home, USER=name, LOGNAME=name)
    return account
