"""Downloading a model by URL without becoming a way into the network around this machine.

- http and https only;
- the host is resolved once and every address it gives is checked: only globally
  routable addresses (`ipaddress`'s `is_global`, minus multicast, site-local and
  reserved) pass; an IPv4 address embedded in an IPv6 one (IPv4-mapped, NAT64,
  6to4, Teredo) is checked as IPv4, so `::ffff:127.0.0.1` is loopback. A host
  whose `host[:port]` is in the allowed list skips the check. The connection goes
  to the checked address (a DNS answer that changes between check and connect
  cannot redirect it); https still verifies the certificate against the host name;
- redirects are followed by hand, each hop checked the same way (at most 5);
- no wait is open-ended: an attempt must reach the answer within `timeout` (connect, TLS and every
  redirect included) and then receive 64 KiB in every `timeout` seconds (a stall deadline: a large model
  may take hours, a trickle may not); a stalled attempt is resumed by the next, at most RETRIES times;
- the body is streamed to `.<dest>.part`, beside a record (`.<dest>.part.json`)
  of the URL, the expected sha256 and the total size the server announced; an
  interrupted transfer is resumed with a Range request only for the same URL and
  sha256, and a 206 is used only if it starts at the offset asked and states the
  same total (a 416 means "complete" only if the part has exactly that total);
  anything else discards the part and starts over;
- the part gets the real name only when complete and, if a sha256 was given,
  matching, and never over an existing file unless `overwrite` (hard link, not
  rename); a failure leaves nothing under the real name.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import ipaddress
import json
import os
import re
import socket
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import BadRequest, SageMakerError
from .http_deadline import Deadline, connection

MAX_REDIRECTS = 5
CHUNK = 1 << 20
RETRIES = 3
PROGRESS = 64 << 10  # a download that receives less than this in its `timeout` has stalled

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known prefix: the last 32 bits are the IPv4 address
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


class DownloadRefused(BadRequest):
    """The URL is not allowed (scheme, or an address inside this machine's network)."""

    code = "download_refused"


class DownloadFailed(SageMakerError):
    """The download did not complete or its content did not match the expected sha256."""

    code = "download_failed"


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, bool] | None:
    """(the IPv4 address an IPv6 address stands for, whether that IPv4 alone decides) or None."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, True
    if ip in _NAT64:  # DNS64 networks give every IPv4-only host such an address: judge the IPv4
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), True
    if ip.sixtofour is not None:
        return ip.sixtofour, False
    if ip.teredo is not None:
        return ip.teredo[1], False  # the client; teredo has already undone its obfuscation
    return None


def _blocked(ip: IPAddress) -> str | None:
    """Why `ip` may not be downloaded from, or None for a globally routable address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            v4, decides = embedded
            why = _blocked(v4)
            if why:
                return f"{why} (as {v4}, the IPv4 address it embeds)"
            if decides:
                return None
        if ip.is_site_local:  # fec0::/10: deprecated, but still private where used; is_global misses it
            return "a site-local address"
    if ip.is_unspecified or ip.is_reserved:
        return "a reserved address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (such as the cloud metadata service)"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "not globally routable (a shared, carrier-grade NAT or special-purpose range, " \
               "where cloud metadata services such as 100.100.100.200 live)"
    return None


# The setting that lets a host inside this machine's network through: (its key, its label in the Connect panel).
DOWNLOAD_HOSTS = ("download_allowed_hosts", "Model downloads may also reach")


def check_url(url: str, allowed_hosts: Iterable[str] = (),
              resolve: Callable[..., list] = socket.getaddrinfo,
              setting: tuple[str, str] = DOWNLOAD_HOSTS) -> tuple[urllib.parse.SplitResult, str]:
    """(parsed URL, the one address to connect to). DownloadRefused saying why; refused for its address, it names
    `setting` in the panel's words and carries `details` {setting, host} (the page offers to open Connect)."""
    # urlsplit silently drops tabs and newlines (and a request line would carry a CR LF): refuse them.
    if not isinstance(url, str) or any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise DownloadRefused("the URL holds spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # ValueError for a port out of range or not a number
    except ValueError as err:
        raise DownloadRefused(f"not a valid URL: {err}") from None
    if parts.scheme not in ("http", "https"):
        raise DownloadRefused(f"only http and https URLs can be downloaded, not {parts.scheme or 'no scheme'!r}")
    if not parts.hostname:
        raise DownloadRefused("the URL has no host")
    port = port or (443 if parts.scheme == "https" else 80)
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
                key, label = setting
                refused = DownloadRefused(f"{parts.hostname} resolves to {address}, {why}; to allow it, add "
                                          f"{parts.hostname} to \"{label}\" in Connect (more settings; {key} in "
                                          "config.json)")
                refused.details = {"setting": key, "host": parts.hostname}
                raise refused
    return parts, addresses[0]


def open_checked(parts: urllib.parse.SplitResult, address: str, headers: dict, deadline: Deadline,
                 method: str = "GET", body: bytes | None = None) -> http.client.HTTPResponse:
    """A request to the checked `address` (never a fresh DNS answer); https verifies the host name. Every
    step until the answer's headers, and each later read of its body, ends by `deadline`."""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    conn = connection(parts.scheme, address, parts.hostname or "", port, deadline)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    try:
        conn.request(method, path, body=body, headers={"Host": host, "User-Agent": "comfyui-sagemaker", **headers})
        return conn.getresponse()
    except BaseException:
        conn.close()
        raise


def _hash_existing(path: Path) -> hashlib._Hash:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h


def _follow(url: str, done: int, allowed_hosts: Iterable[str], resolve, deadline: Deadline) -> http.client.HTTPResponse:
    """GET `url` from byte `done` on, following redirects by hand, each hop checked; every hop until the
    answer's headers within `deadline`."""
    current = url
    for _hop in range(MAX_REDIRECTS + 1):
        parts, address = check_url(current, allowed_hosts, resolve)
        response = open_checked(parts, address, {"Range": f"bytes={done}-"} if done else {}, deadline)
        if response.status not in (301, 302, 303, 307, 308):
            return response
        location = response.getheader("Location")
        response.close()
        if not location:
            raise DownloadFailed(f"{parts.hostname} redirected without a Location")
        current = urllib.parse.urljoin(current, location)
    raise DownloadFailed(f"more than {MAX_REDIRECTS} redirects from {url}")


class _Part:
    """`.<dest>.part` and its record: which URL, expected sha256 and announced total the bytes belong to."""

    def __init__(self, dest: Path, url: str, sha256: str | None):
        self.path = dest.with_name(f".{dest.name}.part")
        self.record = dest.with_name(f".{dest.name}.part.json")
        self.url, self.sha256 = url, sha256

    def resume_point(self) -> tuple[int, int | None]:
        """(bytes to resume from, announced total); a part that is not this download's is discarded."""
        try:
            record = json.loads(self.record.read_text(encoding="utf-8"))
            size = self.path.stat().st_size
        except (OSError, ValueError):
            record, size = None, 0
        if (isinstance(record, dict) and record.get("url") == self.url and record.get("sha256") == self.sha256
                and isinstance(record.get("total"), int) and 0 < size <= record["total"]):
            return size, record["total"]
        self.discard()
        return 0, None

    def start(self, total: int | None) -> None:
        """Empty the part and record what it will hold; the record comes first, so a part is never unrecorded
        bytes of a known download (a crash in between leaves a record without a part: discarded)."""
        self.discard()
        with open(self.record, "x", encoding="utf-8") as f:
            json.dump({"url": self.url, "sha256": self.sha256, "total": total}, f)
        self.path.write_bytes(b"")

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.record.unlink(missing_ok=True)


def _content_range(response: http.client.HTTPResponse) -> tuple[int, int] | None:
    """(first byte, total) from a 206's Content-Range, or None when it is missing or unusable."""
    m = _CONTENT_RANGE.fullmatch((response.getheader("Content-Range") or "").strip())
    if not m or int(m[1]) > int(m[2]) or int(m[2]) >= int(m[3]):
        return None
    return int(m[1]), int(m[3])


def _receive(response: http.client.HTTPResponse, part: Path, done: int, total: int | None,
             progress: Callable[[int, int | None], None] | None, deadline: Deadline) -> int:
    """Append the body to `part` (holding `done` bytes); returns the bytes now in it. Each PROGRESS bytes
    renew the stall `deadline`: a trickle slower than that ends the transfer (it is resumed later)."""
    since = 0
    with open(part, "ab") as f:
        while chunk := response.read1(CHUNK):  # what has arrived: the deadline is renewed as it comes
            f.write(chunk)
            done += len(chunk)
            since += len(chunk)
            if since >= PROGRESS:
                deadline.renew()
                since = 0
            if progress:
                progress(done, total)
            if total is not None and done > total:
                raise DownloadFailed(f"the server sent more than the {total} bytes it announced")
    return done


def install(src: Path, dest: Path, *, overwrite: bool) -> None:
    """Give the complete file `src` the name `dest`. Without `overwrite` an existing `dest`, even one created
    a moment ago, is kept and FileExistsError raised (`src` stays): a hard link cannot replace a file, a
    rename would."""
    if overwrite:
        os.replace(src, dest)
        return
    try:
        os.link(src, dest)
    except FileExistsError:
        raise
    except OSError:  # no hard links here (FAT, some network shares)
        if os.name == "nt":
            os.rename(src, dest)  # Windows' rename never replaces: FileExistsError
            return
        if os.path.lexists(dest):  # the best left without link(): a check, then a rename
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dest)) from None
        os.rename(src, dest)
        return
    os.unlink(src)


def download(url: str, dest: Path, *, sha256: str | None = None, allowed_hosts: Iterable[str] = (),
             progress: Callable[[int, int | None], None] | None = None, timeout: float = 60,
             resolve: Callable[..., list] = socket.getaddrinfo, overwrite: bool = False) -> str:
    """Download `url` to `dest`; returns the sha256. See the module docstring for what is refused.

    `timeout` is a stall deadline: each attempt must reach the answer's headers within it (connect, TLS,
    redirects included) and then receive at least PROGRESS bytes in every `timeout` seconds; otherwise the
    attempt ends and the next resumes from the part.

    FileExistsError when `dest` exists (before or by the end) and not `overwrite`; a complete download is
    then kept as the part, and the next call for the same URL installs it without downloading it again.
    """
    sha256 = sha256.lower() if sha256 else None
    part = _Part(dest, url, sha256)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite and os.path.lexists(dest):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dest))
    last_error = "no attempt"
    for _attempt in range(RETRIES + 1):
        done, total = part.resume_point()
        deadline = Deadline(timeout, f"stalled: no answer, or less than {PROGRESS >> 10} KiB, in {timeout:g} s")
        try:
            response = _follow(url, done, allowed_hosts, resolve, deadline)
        except (OSError, http.client.HTTPException) as err:
            last_error = f"cannot connect: {err}"
            continue
        deadline.renew()  # the answer came: the body's own stall deadline starts
        try:
            if response.status == 416 and done:
                if done != total:  # the server cannot send what the part lacks: its bytes are not vouched for
                    part.discard()
                    last_error = f"the server refused the range after byte {done} of {total}; starting over"
                    continue
            elif response.status == 206:
                got = _content_range(response)
                if got is None or got[0] != done or (done and got[1] != total):
                    # Other bytes than asked for, or the file changed size: the part cannot be continued.
                    part.discard()
                    last_error = (f"the server answered a range request with Content-Range "
                                  f"{response.getheader('Content-Range')!r}, not bytes {done}-…/{total}; starting over")
                    continue
                if not done:
                    part.start(got[1])
                total = got[1]
                done = _receive(response, part.path, done, total, progress, deadline)
            elif response.status == 200:  # also the answer to a Range request the server ignores: start over
                length = response.getheader("Content-Length")
                total = int(length) if length and length.isdigit() else None
                part.start(total)
                done = _receive(response, part.path, 0, total, progress, deadline)
            else:
                part.discard()
                raise DownloadFailed(f"the server answered {response.status} {response.reason}")
            if total is not None and done < total:
                last_error = f"the server closed the connection after {done} of {total} bytes"
                continue
        except DownloadFailed:
            part.discard()
            raise
        except (OSError, http.client.HTTPException) as err:
            last_error = f"the transfer stopped: {err}"
            continue
        finally:
            response.close()
        digest = _hash_existing(part.path).hexdigest()
        if sha256 and digest != sha256:
            part.discard()
            raise DownloadFailed(f"sha256 mismatch: expected {sha256}, got {digest}; the file was removed")
        install(part.path, dest, overwrite=overwrite)
        part.record.unlink(missing_ok=True)
        return digest
    kept = "; the partial file is kept to resume" if part.path.exists() else ""
    raise DownloadFailed(f"download of {url} failed: {last_error}{kept}")
