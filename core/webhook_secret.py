"""Where a process's webhook signing secret lives: never in the store.

Everyone who reads the store (every artist, an endpoint's role) could read a secret kept there and sign
webhooks as us. So the secret is the delivering process's own configuration:

- `COMFYUI_SAGEMAKER_WEBHOOK_SECRET` (a gateway's replicas share one this way; on AWS from Secrets Manager
  or SSM through the container's environment), else
- the file `webhook_secret` in the process's configuration folder (ComfyUI's `user/__sagemaker`, which
  ComfyUI's /userdata API does not serve), readable by its owner only (mode 0600): a file others may read
  is refused, not used.

A ComfyUI makes its file on first use; the gateway never makes one (replicas would each make another): it
is given one. `python -m comfyui_sagemaker webhook-secret` prints it (`--rotate` makes a new one). The file
and the variable may hold several secrets, space-separated: the first signs, and each signs too, so
receivers can move to a new secret without a gap. The secret of older versions, `webhooks/secret.json` in
the store, is never used: it was readable by every reader of the store.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .errors import BadRequest
from .net.fetch import install
from .webhook_signing import WebhookSecretInvalid, keys, new_secret

ENV = "COMFYUI_SAGEMAKER_WEBHOOK_SECRET"
FILE = "webhook_secret"
LEGACY_KEY = "webhooks/secret.json"
MAX_FILE = 4096


class WebhookSecretUnavailable(BadRequest):
    """This process has no usable webhook signing secret: none given, or one it must not or cannot use."""

    code = "webhook_secret_unavailable"


class WebhookSecret:
    """The secret this process signs with, read at each use (a fixed file applies at once)."""

    def __init__(self, folder: Path | None, environ: Mapping[str, str] | None = None, make: bool = False):
        self.folder = Path(folder) if folder is not None else None
        self.environ = os.environ if environ is None else environ
        self.make = make

    @property
    def path(self) -> Path | None:
        return self.folder / FILE if self.folder is not None else None

    def text(self) -> str:
        """The secret(s) as configured; WebhookSecretUnavailable saying why there is none to use."""
        if self.environ.get(ENV, "").strip():
            return self.environ[ENV].strip()
        if self.path is None:
            raise WebhookSecretUnavailable(f"no webhook signing secret here: set {ENV}")
        try:
            return _read_private(self.path)
        except FileNotFoundError:
            if not self.make:
                raise WebhookSecretUnavailable(
                    f"no webhook signing secret here: set {ENV}, or make {FILE} in the configuration folder "
                    "(python -m comfyui_sagemaker webhook-secret --config-dir <folder>)") from None
        return self.create()

    def keys(self) -> list[bytes]:
        """The HMAC keys to sign with (the first is current); WebhookSecretUnavailable when there are none."""
        where = ENV if self.environ.get(ENV, "").strip() else str(FILE)
        try:
            return keys(self.text(), where)
        except WebhookSecretInvalid as err:
            raise WebhookSecretUnavailable(f"{err.message}: fix it, or make a new one (webhook-secret "
                                           "--rotate)") from None

    def create(self) -> str:
        """The file's secret, made now if there is none (exclusively: two processes agree on one)."""
        try:
            made = self._write_temp(new_secret())
            try:
                install(made, self._need_path(), overwrite=False)
            except FileExistsError:  # another process made it first: theirs is the one
                made.unlink(missing_ok=True)
            return _read_private(self._need_path())
        except OSError as err:  # no room, no right, or a dangling link where the file goes
            raise WebhookSecretUnavailable(f"{FILE} cannot be made: {err.strerror or err}") from None

    def rotate(self) -> str:
        """A new secret in the file (receivers must be given it); deliveries sign with it from now on."""
        if self.environ.get(ENV, "").strip():
            raise WebhookSecretUnavailable(f"the secret comes from {ENV}: change it there")
        value = new_secret()
        install(self._write_temp(value), self._need_path(), overwrite=True)
        return value

    def _need_path(self) -> Path:
        if self.path is None:
            raise WebhookSecretUnavailable(f"no configuration folder to keep the secret in: pass one, or set {ENV}")
        return self.path

    def _write_temp(self, value: str) -> Path:
        folder = self._need_path().parent
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{FILE}.", suffix=".tmp", dir=folder)  # mode 0600
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(value + "\n")
            f.flush()
            os.fsync(f.fileno())
        return Path(name)


def _read_private(path: Path) -> str:
    """The file's text, if only its owner may read it (POSIX) and it is a small regular file (a FIFO or a
    device is refused, not waited on). FileNotFoundError when there is none."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise
    except OSError as err:
        raise WebhookSecretUnavailable(f"{path.name} cannot be read: {err.strerror or err}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise WebhookSecretUnavailable(f"{path.name} is not a regular file")
        if os.name == "posix" and info.st_mode & 0o077:
            raise WebhookSecretUnavailable(
                f"{path.name} may be read by others (mode {stat.S_IMODE(info.st_mode):o}), so it is not used: make "
                "a new one (webhook-secret --rotate; the old one may have been read), or chmod 600 it")
        data = os.read(fd, MAX_FILE + 1)
    except OSError as err:
        raise WebhookSecretUnavailable(f"{path.name} cannot be read: {err.strerror or err}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE:
        raise WebhookSecretUnavailable(f"{path.name} is over {MAX_FILE} bytes: not a webhook secret")
    try:
        return data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise WebhookSecretUnavailable(f"{path.name} is not a webhook secret (whsec_ followed by base64)") from None
