"""Model and pack blobs fetched from S3 with ranged GETs in parallel, sized to the instance.

AWS's S3 performance guidance ("Use byte-range fetches", Best Practices Design Patterns: Optimizing
Amazon S3 Performance): concurrent connections fetching different byte ranges of one object reach a
higher aggregate throughput than one whole-object request; typical ranges are 8 or 16 MB, best aligned
with the parts the object was uploaded in (the store uploads 64 MiB parts, a multiple of 16 MiB).

- part size: 16 MiB (`WORKER_FETCH_PART_MB`);
- parallel GETs: 4 per vCPU, between 8 and 64 (`WORKER_FETCH_CONCURRENCY`): an ml.g5.xlarge (4 vCPUs,
  up to 10 Gbps) gets 16, an ml.g5.12xlarge (48 vCPUs, 40 Gbps) 64;
- each part is written in place (pwrite) as it arrives, and the sha256 is computed in order while the
  later parts are still downloading (from the page cache), so verifying adds little to the fetch;
- every GET after the first carries the first answer's ETag (If-Match): an object replaced meanwhile
  fails the fetch instead of mixing two objects; a part whose connection breaks is fetched again.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from ..core.store import KeyNotFound

MIB = 1024 * 1024
DEFAULT_PART = 16 * MIB
READ_CHUNK = 1 * MIB
PART_ATTEMPTS = 3
_clients: dict[tuple[str, int], Any] = {}
_clients_lock = threading.Lock()


def concurrency_for(cpus: int | None = None) -> int:
    return min(64, max(8, 4 * (cpus or os.cpu_count() or 1)))


def s3_client(region: str, concurrency: int) -> Any:
    """A client whose connection pool holds every parallel GET (boto3's default pool has 10)."""
    key = (region, concurrency)
    with _clients_lock:
        if key not in _clients:
            import boto3
            from botocore.config import Config

            cfg = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=concurrency + 2)
            _clients[key] = boto3.session.Session().client("s3", region_name=region or None, config=cfg)
        return _clients[key]


def _total_from(response: dict) -> int:
    content_range = response.get("ContentRange") or ""
    if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
        return int(content_range.rsplit("/", 1)[1])
    return int(response["ContentLength"])


class RangedFetch:
    """One object to one file; `run()` returns the file's sha256."""

    def __init__(self, s3: Any, bucket: str, key: str, dest: Path, part_size: int = DEFAULT_PART,
                 concurrency: int | None = None, on_bytes: Callable[[int], None] | None = None):
        self.s3, self.bucket, self.key, self.dest = s3, bucket, key, Path(dest)
        self.part_size = max(MIB, part_size)
        self.concurrency = concurrency or concurrency_for()
        self.on_bytes = on_bytes or (lambda n: None)
        self.etag: str | None = None

    def _get(self, start: int, end: int) -> dict:
        from botocore.exceptions import ClientError

        args = {"Bucket": self.bucket, "Key": self.key, "Range": f"bytes={start}-{end}"}
        if self.etag:
            args["IfMatch"] = self.etag
        try:
            return self.s3.get_object(**args)
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise KeyNotFound(self.key) from None
            if code == "InvalidRange" and start == 0:  # an empty object: no byte 0 to range over
                return self.s3.get_object(Bucket=self.bucket, Key=self.key)
            raise

    def _copy_body(self, fd: int, body: Any, offset: int, counted: list[int] | None = None) -> int:
        """Write the body at `offset`; `counted[0]` holds the bytes reported so far, even if reading fails."""
        counted = counted if counted is not None else [0]
        written = 0
        while True:
            chunk = body.read(READ_CHUNK)
            if not chunk:
                return written
            view = memoryview(chunk)
            while view:
                n = os.pwrite(fd, view, offset + written)
                view = view[n:]
                written += n
            counted[0] += len(chunk)
            self.on_bytes(len(chunk))

    def _part(self, fd: int, start: int, length: int) -> None:
        from botocore.exceptions import BotoCoreError

        for attempt in range(PART_ATTEMPTS):
            counted = [0]
            try:
                got = self._copy_body(fd, self._get(start, start + length - 1)["Body"], start, counted)
            except (BotoCoreError, OSError, ConnectionError):
                self.on_bytes(-counted[0])  # counted again by the next attempt
                if attempt == PART_ATTEMPTS - 1:
                    raise
                continue
            if got == length:
                return
            self.on_bytes(-counted[0])
            if attempt == PART_ATTEMPTS - 1:
                raise OSError(f"s3://{self.bucket}/{self.key}: range at {start} gave {got} of {length} bytes")

    def _first(self, fd: int, body: Any, length: int) -> None:
        """The first range's body (its headers told the object's size and ETag); fetched again if it breaks."""
        from botocore.exceptions import BotoCoreError

        counted = [0]
        try:
            if self._copy_body(fd, body, 0, counted) == length:
                return
        except (BotoCoreError, OSError, ConnectionError):
            pass
        self.on_bytes(-counted[0])
        self._part(fd, 0, length)

    def run(self) -> str:
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        first = self._get(0, self.part_size - 1)  # returns once its headers are in; the body streams later
        total, self.etag = _total_from(first), first.get("ETag")
        digest = hashlib.sha256()
        fd = os.open(self.dest, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, total)
            done: dict[int, int] = {}  # part start -> length, for the in-order hash
            hashed = 0
            parts = [(start, min(self.part_size, total - start)) for start in range(0, total, self.part_size)]
            with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(parts))),
                                    thread_name_prefix="fetch") as pool:
                pending: dict[Future, tuple[int, int]] = {}
                for start, length in parts:
                    job = pool.submit(self._first, fd, first["Body"], length) if start == 0 else \
                        pool.submit(self._part, fd, start, length)
                    pending[job] = (start, length)
                try:
                    while True:
                        hashed = self._hash_ready(fd, digest, done, hashed)
                        if not pending:
                            break
                        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                        for future in finished:
                            start, length = pending.pop(future)
                            future.result()  # a failed part fails the fetch
                            done[start] = length
                except BaseException:
                    for future in pending:  # parts not started yet are not fetched for nothing
                        future.cancel()
                    raise
            if hashed != total:
                raise OSError(f"s3://{self.bucket}/{self.key}: hashed {hashed} of {total} bytes")
        finally:
            os.close(fd)
        return digest.hexdigest()

    @staticmethod
    def _hash_ready(fd: int, digest: Any, done: dict[int, int], hashed: int) -> int:
        while hashed in done:
            end = hashed + done.pop(hashed)
            while hashed < end:
                chunk = os.pread(fd, min(8 * MIB, end - hashed), hashed)
                if not chunk:
                    raise OSError("file shorter than the bytes written to it")
                digest.update(chunk)
                hashed += len(chunk)
        return hashed
