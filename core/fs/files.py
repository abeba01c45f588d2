"""Files read from disk must be regular files.

Opening a FIFO for reading waits for a writer, for good (a manifest that is a FIFO left a worker
`starting` with no reason); a device or a socket is never data. Files are opened without blocking and
checked on the open descriptor, so nothing can be swapped in between a check and the open.
"""

from __future__ import annotations

import errno
import io
import os
import stat

from ..errors import SageMakerError

_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


class NotARegularFile(SageMakerError):
    """A file read from the store or the disk (a manifest, a blob, a pack, an output) is a FIFO, device
    or socket: refused with its name, never opened for a read that would wait."""

    code = "not_a_regular_file"


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _refused(what: str, kind: str) -> NotARegularFile:
    return NotARegularFile(f"{what} is {kind}, not a regular file: it is not read (replace it with the file)")


def open_regular(path: str | os.PathLike, what: str | None = None) -> io.BufferedReader:
    """`path` opened for reading in binary, if it is a regular file. NotARegularFile (naming `what`, or
    the path) for a FIFO, device or socket; IsADirectoryError for a folder; other OSErrors as open()."""
    what = what or os.fspath(path)
    try:
        fd = os.open(path, _FLAGS)
    except OSError as err:
        if err.errno == errno.ENXIO:  # a Unix socket cannot be opened
            raise _refused(what, "a socket") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder", os.fspath(path))
        if not stat.S_ISREG(mode):
            raise _refused(what, _kind(mode))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike, what: str | None = None) -> bytes:
    """The whole of a regular file (see open_regular)."""
    with open_regular(path, what) as f:
        return f.read()
