"""Downloading a model by URL without becoming a way into the network around this machine.

- http and https only;
- the host is resolved once, every address it gives is checked (loopback,
  link-local such as 169.254.169.254, private, multicast, reserved and
  unspecified addresses are refused unless `host[:port]` is in the allowed
  list), and the connection goes to the checked address (a DNS answer that
  changes between check and connect cannot redirect it); https still verifies
  the certificate against the host name;
- redirects are followed by hand, each hop checked the same way (at most 5);
- the body is streamed to `<dest>.part` and renamed to `<dest>` only when
  complete and, if a sha256 was given, matching; an interrupted transfer is
  resumed with a Range request, and a failure leaves nothing under the real name.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import os
import socket
import ssl
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import BadRequest, SageMakerError

MAX_REDIRECTS = 5
CHUNK = 1 << 20
RETRIES = 3


class DownloadRefused(BadRequest):
    """The URL is not allowed (scheme, or an address inside this machine's network)."""

    code = "download_refused"


class DownloadFailed(SageMakerError):
    """The download did not complete or its content did not match the expected sha256."""

    code = "download_failed"


def _blocked(ip: ipaddress._BaseAddress) -> str | None:
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return "a reserved address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (such as the cloud metadata service)"
    if ip.is_private:
        return "a private address"
    return None


def check_url(url: str, allowed_hosts: Iterable[str] = (),
              resolve: Callable[..., list] = socket.getaddrinfo) -> tuple[urllib.parse.SplitResult, str]:
    """(parsed URL, the one address to connect to). DownloadRefused saying why."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise DownloadRefused(f"only http and https URLs can be downloaded, not {parts.scheme or 'no scheme'!r}")
    if not parts.hostname:
        raise DownloadRefused("the URL has no host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    allowed = {h.lower() for h in allowed_hosts}
    exempt = parts.hostname.lower() in allowed or f"{parts.hostname.lower()}:{port}" in allowed
    try:
        infos = resolve(parts.hostname, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise DownloadRefused(f"cannot resolve {parts.hostname}: {err}") from None
    addresses = [info[4][0] for info in infos]
    if not addresses:
        raise DownloadRefused(f"{parts.hostname} has no address")
    if not exempt:
        for address in addresses:
            why = _blocked(ipaddress.ip_address(address.split("%")[0]))
            if why:
                raise DownloadRefused(f"{parts.hostname} resolves to {address}, {why}; add the host to "
                                      "download_allowed_hosts in the configuration to allow it")
    return parts, addresses[0]


class _PinnedHTTPS(http.client.HTTPSConnection):
    """Connects to a checked address while verifying the certificate for the host name."""

    def __init__(self, address: str, hostname: str, port: int, timeout: float):
        super().__init__(hostname, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _open(parts: urllib.parse.SplitResult, address: str, headers: dict, timeout: float) -> http.client.HTTPResponse:
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = _PinnedHTTPS(address, parts.hostname, port, timeout)
    else:
        conn = http.client.HTTPConnection(address, port, timeout=timeout)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    conn.request("GET", path, headers={"Host": host, "User-Agent": "comfyui-sagemaker", **headers})
    return conn.getresponse()


def _hash_existing(path: Path) -> hashlib._Hash:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h


def _follow(url: str, done: int, allowed_hosts: Iterable[str], resolve, timeout: float) -> http.client.HTTPResponse:
    """GET `url` from byte `done` on, following redirects by hand, each hop checked."""
    current = url
    for _hop in range(MAX_REDIRECTS + 1):
        parts, address = check_url(current, allowed_hosts, resolve)
        response = _open(parts, address, {"Range": f"bytes={done}-"} if done else {}, timeout)
        if response.status not in (301, 302, 303, 307, 308):
            return response
        location = response.getheader("Location")
        response.close()
        if not location:
            raise DownloadFailed(f"{parts.hostname} redirected without a Location")
        current = urllib.parse.urljoin(current, location)
    raise DownloadFailed(f"more than {MAX_REDIRECTS} redirects from {url}")


def _receive(response: http.client.HTTPResponse, part: Path, done: int,
             progress: Callable[[int, int | None], None] | None) -> tuple[int, int | None]:
    """Append the body to `part`; returns (bytes now in part, expected total or None)."""
    length = response.getheader("Content-Length")
    total = done + int(length) if length and length.isdigit() else None
    with open(part, "ab" if done else "wb") as f:
        while chunk := response.read(CHUNK):
            f.write(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    return done, total


def download(url: str, dest: Path, *, sha256: str | None = None, allowed_hosts: Iterable[str] = (),
             progress: Callable[[int, int | None], None] | None = None, timeout: float = 60,
             resolve: Callable[..., list] = socket.getaddrinfo) -> str:
    """Download `url` to `dest`; returns the sha256. See the module docstring for what is refused."""
    part = dest.with_name(f".{dest.name}.part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    last_error = "no attempt"
    for _attempt in range(RETRIES + 1):
        done = part.stat().st_size if part.exists() else 0
        try:
            response = _follow(url, done, allowed_hosts, resolve, timeout)
        except (OSError, http.client.HTTPException) as err:
            last_error = f"cannot connect: {err}"
            continue
        try:
            if response.status == 416 and done:
                pass  # the part holds everything already
            elif response.status not in (200, 206):
                part.unlink(missing_ok=True)
                raise DownloadFailed(f"the server answered {response.status} {response.reason}")
            else:
                # 200 to a Range request: the server starts over, and so do we.
                done, total = _receive(response, part, done if response.status == 206 else 0, progress)
                if total is not None and done < total:
                    last_error = f"the server closed the connection after {done} of {total} bytes"
                    continue
        except (OSError, http.client.HTTPException) as err:
            last_error = f"the transfer stopped: {err}"
            continue
        finally:
            response.close()
        digest = _hash_existing(part).hexdigest()
        if sha256 and digest != sha256.lower():
            part.unlink(missing_ok=True)
            raise DownloadFailed(f"sha256 mismatch: expected {sha256.lower()}, got {digest}; the file was removed")
        os.replace(part, dest)
        return digest
    raise DownloadFailed(f"download of {url} failed: {last_error}; the partial file is kept to resume")
