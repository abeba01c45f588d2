"""Outbound HTTP with a deadline over the whole exchange, not only per read.

A socket timeout bounds one blocking call: a peer that sends one byte before each timeout holds a request
open for ever. Here every blocking step of an exchange (connect, TLS handshake, each send, each read of the
status line, headers and body) gets only the time left until a `Deadline`, so the exchange ends by it.

Two kinds of deadline use the one class:
- whole: `Deadline(10)` for a request and its whole answer (webhooks, calls to our own workers, the CLI);
- stall: a download of a large model legitimately takes hours, so its deadline is `renew`ed each time it
  makes progress (core/net/fetch.py: 64 KiB received); no progress for that long ends it.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import ssl
import time
import urllib.parse


class DeadlineExceeded(TimeoutError):
    """The exchange did not finish within its deadline."""


class Deadline:
    """A moment by which something must be done, `seconds` from now (and from each `renew`)."""

    def __init__(self, seconds: float, message: str = "", clock=time.monotonic):
        self.seconds = float(seconds)
        self.message = message or f"timed out: not done within {self.seconds:g} s"
        self._clock = clock
        self.at = clock() + self.seconds

    def renew(self) -> None:
        """Progress was made: the deadline is `seconds` from now again (a stall deadline)."""
        self.at = self._clock() + self.seconds

    def left(self) -> float:
        """Seconds left; DeadlineExceeded when none are (never 0: a 0 timeout makes a socket non-blocking)."""
        left = self.at - self._clock()
        if left <= 0:
            raise DeadlineExceeded(self.message)
        return left

    def call(self, step, *args):
        """`step(*args)` on a socket whose timeout is the time left; its timeout said as this deadline's."""
        try:
            return step(*args)
        except TimeoutError as err:
            if isinstance(err, DeadlineExceeded):
                raise
            raise DeadlineExceeded(self.message) from None


class _Reader(io.RawIOBase):
    """The socket's reading side, each read given only the time left."""

    def __init__(self, sock: socket.socket, deadline: Deadline):
        self._raw = sock.makefile("rb", buffering=0)  # counts as a reference: the socket stays open for it
        self._sock, self._deadline = sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int | None:
        self._sock.settimeout(self._deadline.left())
        return self._deadline.call(self._raw.readinto, buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _Socket:
    """What http.client sees as its socket: sends and reads that end by the deadline."""

    def __init__(self, sock: socket.socket, deadline: Deadline):
        self._sock, self._deadline = sock, deadline

    def sendall(self, data) -> None:
        view = memoryview(data).cast("B")
        while view:  # send() writes what fits now: each part gets the time left, not a fresh timeout
            self._sock.settimeout(self._deadline.left())
            view = view[self._deadline.call(self._sock.send, view):]

    def makefile(self, mode: str = "r", *args, **kwargs):
        if mode != "rb":
            raise ValueError("only a binary reader is offered")
        return io.BufferedReader(_Reader(self._sock, self._deadline))

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


def _connect(address: str, port: int, deadline: Deadline) -> socket.socket:
    sock = deadline.call(socket.create_connection, (address, port), deadline.left())
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Connection(http.client.HTTPConnection):
    """HTTP to `address` (already chosen: no DNS here), every step within `deadline`."""

    def __init__(self, address: str, port: int, deadline: Deadline):
        super().__init__(address, port)
        self.deadline = deadline

    def connect(self) -> None:
        self.sock = _Socket(_connect(self.host, self.port, self.deadline), self.deadline)


class TLSConnection(http.client.HTTPSConnection):
    """HTTPS to `address` while verifying the certificate for `hostname`, every step within `deadline`."""

    def __init__(self, address: str, hostname: str, port: int, deadline: Deadline):
        self._tls = ssl.create_default_context()
        super().__init__(hostname, port, context=self._tls)
        self._address, self.deadline = address, deadline

    def connect(self) -> None:
        sock = _connect(self._address, self.port, self.deadline)
        try:
            sock.settimeout(self.deadline.left())  # the handshake as a whole is bounded by it (ssl's own deadline)
            tls = self.deadline.call(lambda: self._tls.wrap_socket(sock, server_hostname=self.host))
        except BaseException:
            sock.close()
            raise
        self.sock = _Socket(tls, self.deadline)


def connection(scheme: str, address: str, hostname: str, port: int, deadline: Deadline) -> http.client.HTTPConnection:
    if scheme == "https":
        return TLSConnection(address, hostname, port, deadline)
    return Connection(address, port, deadline)


def request(url: str, method: str = "GET", body: object = None, headers: dict | None = None, seconds: float = 10,
            limit: int = 64 << 20) -> tuple[int, bytes]:
    """(status, whole answer body) of one request to a URL we chose ourselves (our own worker, the ComfyUI a
    CLI names: no address checks), all within `seconds`; `body` is sent as JSON. OSError (TimeoutError for
    the deadline) or http.client.HTTPException when it cannot be had; ValueError over `limit` bytes."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    deadline = Deadline(seconds)
    conn = connection(parts.scheme, parts.hostname or "", parts.hostname or "", port, deadline)
    data = None if body is None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})} if data is not None else dict(headers or {})
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request(method, path, body=data, headers=sent)
        response = conn.getresponse()
        answer = response.read(limit + 1)
    finally:
        conn.close()
    if len(answer) > limit:
        raise ValueError(f"the answer is over {limit} bytes")
    return response.status, answer
