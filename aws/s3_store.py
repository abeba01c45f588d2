"""The S3 store: the same contract as the folder store, on a bucket + prefix.

Atomicity comes from S3's conditional writes: `create` is a PutObject with
`If-None-Match: *` (412 PreconditionFailed means another writer won; 409
ConditionalRequestConflict is S3's "a conflicting operation is in progress,
retry", and is retried), `replace` a PutObject with `If-Match: <etag>`.

Blobs: up to the multipart threshold a PutObject carries the blob's own
sha256 as `ChecksumSHA256`, so S3 itself refuses bytes that do not match it
(BadDigest); larger files go up in parts, each with its SHA-256 checked by S3,
and the file must be unchanged (size, mtime, inode) from before to after the
upload, else the object is removed. Blobs are written once: the PutObject or
CompleteMultipartUpload carries `If-None-Match: *` (the policies refuse a blob
write without it), so nobody replaces a blob's bytes. A present blob counts
only when verified in full: a single PUT's full-object checksum is the digest;
a multipart object's checksum is composite (the SHA-256 of its parts'
SHA-256s, "...-N"), so it is recomputed from the caller's file with the
object's own part size, or, without a file, the object is read and hashed
(once per ETag in this process). A blob that fails this is corrupt: a writer
allowed to delete it (a designer's publish) replaces it; another is told so.
"""

from __future__ import annotations

import base64
import builtins
import functools
import io
import os
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..core.errors import StoreUnavailable
from ..core.net.retry import Backoff, retry
from ..core.store import (
    BlobCorrupt,
    BlobMismatch,
    KeyExists,
    KeyNotFound,
    PreconditionFailed,
    Store,
    Versioned,
    blob_key,
    check_key,
)
from . import clients
from .errors import error_code as _code
from .errors import retried as _retried

MULTIPART = 64 * 1024 * 1024

LOST_RACE = {"PreconditionFailed", "412"}  # the condition was checked and is false: another writer won
# 409: "a conflicting operation occurred during the upload... retry" (PutObject's IfNoneMatch / IfMatch
# in S3's API reference); the condition was not decided, so the write is tried again after a pause.
CONFLICT = {"ConditionalRequestConflict", "409"}
CONFLICT_BACKOFF = Backoff(0.05, attempts=5, jitter=0.5)  # pauses of 0.05, 0.1, 0.2, 0.4 s, each +-50 %
MISSING = {"NoSuchKey", "404", "NotFound"}
# x-amz-meta-comfyui-sagemaker-write: the nonce of the conditional write that made this version of the
# object. S3's reads are strongly consistent after a write (S3 User Guide, "Amazon S3 data consistency
# model"), so a HEAD right after a 412 sees the version that made the condition false.
WRITE_NONCE = "comfyui-sagemaker-write"


def _unavailable_on_aws_error(fn):
    @functools.wraps(fn)
    def wrapper(self: S3Store, *args, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            return fn(self, *args, **kwargs)
        except (BlobMismatch, BlobCorrupt):
            raise
        except NoCredentialsError:
            raise StoreUnavailable("no AWS credentials found (boto3's chain: environment, ~/.aws, role)") from None
        except ClientError as err:
            code = _code(err)
            if code == "NoSuchBucket":
                raise StoreUnavailable(f"S3 bucket {self.bucket!r} does not exist") from None
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise StoreUnavailable(f"access denied to s3://{self.bucket}/{self.prefix} ({code})") from None
            raise StoreUnavailable(f"S3 error {code}: {err}") from None
        except BotoCoreError as err:
            raise StoreUnavailable(f"S3 unreachable: {err}") from None

    return wrapper


def encryption_args(sse: str, kms_key_id: str = "") -> dict[str, str]:
    """The put/upload arguments of the configured server-side encryption ({} leaves the bucket's default)."""
    args = {"ServerSideEncryption": sse} if sse else {}
    if sse == "aws:kms" and kms_key_id:
        args["SSEKMSKeyId"] = kms_key_id
    return args


class ProgressBody(io.BytesIO):
    """A request body that reports the bytes read from it as they are sent; a re-read (botocore's retry,
    a checksum pass) reports nothing twice."""

    def __init__(self, data: bytes, on_bytes: Callable[[int], None] | None):
        super().__init__(data)
        self.on_bytes, self.reported = on_bytes, 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self._report(self.tell())
        return chunk

    def _report(self, position: int) -> None:
        if self.on_bytes and position > self.reported:
            self.on_bytes(position - self.reported)
            self.reported = position

    def finish(self) -> None:
        self._report(len(self.getbuffer()))


class S3Store(Store):
    kind = "s3"

    def __init__(self, bucket: str, prefix: str = "", region: str = "", s3_client: Any = None, sse: str = "",
                 kms_key_id: str = "", max_concurrency: int = 10):
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.region = region
        self._client = s3_client
        self.max_concurrency = max_concurrency
        # Every write: encryption as configured, and a SHA-256 checksum S3 verifies on arrival
        # (per part for multipart uploads; the manifest's sha256 stays the identity).
        self.write_args: dict[str, str] = {"ChecksumAlgorithm": "SHA256", **encryption_args(sse, kms_key_id)}
        self._verified: set[tuple[str, str]] = set()  # (blob key, ETag) read and hashed in full here

    @property
    def s3(self) -> Any:
        if self._client is None:
            self._client = clients.client("s3", self.region)
        return self._client

    def transfer_config(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(multipart_threshold=MULTIPART, multipart_chunksize=MULTIPART,
                              max_concurrency=self.max_concurrency)

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def s3_object(self, key: str) -> tuple[str, str, str] | None:
        return self.region, self.bucket, self._key(key)

    @_unavailable_on_aws_error
    def get(self, key: str) -> Versioned:
        from botocore.exceptions import ClientError

        try:
            r = self.s3.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as err:
            if _code(err) in MISSING:
                raise KeyNotFound(key) from None
            raise
        return Versioned(r["Body"].read(), r["ETag"])

    @_unavailable_on_aws_error
    def read_range(self, key: str, start: int, length: int) -> bytes:
        from botocore.exceptions import ClientError

        if length <= 0:
            return b""
        try:
            r = self.s3.get_object(Bucket=self.bucket, Key=self._key(key), Range=f"bytes={start}-{start + length - 1}")
        except ClientError as err:
            if _code(err) in MISSING:
                raise KeyNotFound(key) from None
            if _code(err) == "InvalidRange":  # from past the end
                return b""
            raise
        return r["Body"].read()

    @_unavailable_on_aws_error
    def create(self, key: str, data: bytes) -> str:
        from botocore.exceptions import ClientError

        try:
            r = self._conditional_put(key, data, IfNoneMatch="*")
        except ClientError as err:
            if _code(err) in LOST_RACE:
                raise KeyExists(key) from None
            raise
        return r["ETag"]

    @_unavailable_on_aws_error
    def replace(self, key: str, data: bytes, if_match: str) -> str:
        from botocore.exceptions import ClientError

        # A retry keeps the caller's If-Match: if the conflicting write changed the object, S3 says 412.
        try:
            r = self._conditional_put(key, data, IfMatch=if_match)
        except ClientError as err:
            code = _code(err)
            if code in MISSING:
                raise KeyNotFound(key) from None
            if code in LOST_RACE:
                raise PreconditionFailed(key) from None
            raise
        return r["ETag"]

    def _conditional_put(self, key: str, data: bytes, **condition: str) -> dict:
        """A conditional PutObject, tried again while S3 answers 409 ConditionalRequestConflict. A 412
        that follows an earlier attempt of this same write (botocore's retry after a lost answer, or ours
        after a 409) is checked against the object's nonce: when the object is our own write, its answer
        is returned as the write's."""
        from botocore.exceptions import ClientError

        nonce, sent = uuid.uuid4().hex, 0

        def put() -> dict:
            nonlocal sent
            sent += 1
            return self.s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **condition,
                                      Metadata={WRITE_NONCE: nonce}, **self.write_args)

        try:
            return retry(put, CONFLICT_BACKOFF, lambda err: isinstance(err, ClientError) and _code(err) in CONFLICT)
        except ClientError as err:
            if _code(err) in CONFLICT:
                raise StoreUnavailable(f"S3 kept conflicting on {key!r} ({CONFLICT_BACKOFF.attempts} tries, "
                                       "409 ConditionalRequestConflict): another write is in progress; "
                                       "try again") from None
            if _code(err) in LOST_RACE and (sent > 1 or _retried(err)):
                etag = self._written_by(key, nonce)
                if etag:
                    return {"ETag": etag}
            raise

    def _written_by(self, key: str, nonce: str) -> str | None:
        """The object's ETag when its current version is the write that carried `nonce`; else None (also
        when it cannot be read: the 412 then stands, as it would without this check). A version of ours
        that another writer already replaced also counts as lost: that writer has moved on from it."""
        from botocore.exceptions import ClientError

        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError:
            return None
        return head["ETag"] if head.get("Metadata", {}).get(WRITE_NONCE) == nonce else None

    @_unavailable_on_aws_error
    def put(self, key: str, data: bytes) -> str:
        return self.s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **self.write_args)["ETag"]

    @_unavailable_on_aws_error
    def delete(self, key: str) -> None:
        from botocore.exceptions import ClientError

        # S3's DeleteObject succeeds for a missing key: look first, to say 404.
        try:
            self.s3.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as err:
            if _code(err) in MISSING:
                raise KeyNotFound(key) from None
            raise
        self.s3.delete_object(Bucket=self.bucket, Key=self._key(key))

    @_unavailable_on_aws_error
    def discard(self, key: str) -> None:
        # DeleteObject answers 204 for a missing key too (S3 API reference, DeleteObject): no HEAD first.
        self.s3.delete_object(Bucket=self.bucket, Key=self._key(key))

    @_unavailable_on_aws_error
    def size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            return self.s3.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"]
        except ClientError as err:
            if _code(err) in MISSING:
                return None
            raise

    @_unavailable_on_aws_error
    def put_file(self, key: str, path: str, on_bytes: Callable[[int], None] | None = None) -> None:
        # boto3's transfer manager: multipart and parallel for large files.
        self.s3.upload_file(path, self.bucket, self._key(key), Callback=on_bytes, ExtraArgs=self.write_args,
                            Config=self.transfer_config())

    @_unavailable_on_aws_error
    def put_blob(self, sha256: str, path: str, on_bytes: Callable[[int], None] | None = None) -> None:
        from botocore.exceptions import ClientError

        key = blob_key(sha256)
        before = os.stat(path)
        changed = BlobMismatch(f"{path} changed after it was hashed: its bytes no longer hash to {sha256}; "
                               "nothing was stored (publish again once it is complete)")
        try:
            self._create_blob(key, sha256, path, before.st_size, on_bytes)
        except ClientError as err:
            if _code(err) in ("BadDigest", "InvalidRequest", "XAmzContentSHA256Mismatch"):
                raise changed from None
            if _code(err) not in LOST_RACE:
                raise
            self._settle_existing(key, sha256, path, before.st_size, on_bytes)
            return
        if before.st_size > MULTIPART:
            after = os.stat(path)
            if (before.st_size, before.st_mtime_ns, before.st_ino) != (after.st_size, after.st_mtime_ns, after.st_ino):
                self.s3.delete_object(Bucket=self.bucket, Key=self._key(key))
                raise changed

    def _create_blob(self, key: str, sha256: str, path: str, size: int,
                     on_bytes: Callable[[int], None] | None) -> None:
        """Create the blob's object (If-None-Match: *; 409 tried again): one PutObject with the digest as its
        checksum, or a multipart upload whose CompleteMultipartUpload carries the condition (boto3's transfer
        manager does not pass it: it is added to that one request, for this key only). A 412 is raised as the
        ClientError it is, from either path."""
        from botocore.exceptions import ClientError

        def conflict(err: BaseException) -> bool:
            return isinstance(err, ClientError) and _code(err) in CONFLICT

        if size <= MULTIPART:
            with open(path, "rb") as f:
                data = f.read()
            args = {**self.write_args, "ChecksumSHA256": base64.b64encode(bytes.fromhex(sha256)).decode()}

            def put() -> None:
                body = ProgressBody(data, on_bytes)  # progress while it is sent, not only once it is stored
                self.s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=body, IfNoneMatch="*", **args)
                body.finish()

            retry(put, CONFLICT_BACKOFF, conflict)
            return
        from boto3.exceptions import S3UploadFailedError

        full_key = self._key(key)

        def only_once(params: dict, **_: Any) -> None:
            if params.get("Key") == full_key:
                params["IfNoneMatch"] = "*"

        event = "before-parameter-build.s3.CompleteMultipartUpload"
        handler_id = f"comfyui-sagemaker-create-{uuid.uuid4().hex}"
        self.s3.meta.events.register(event, only_once, unique_id=handler_id)
        try:
            self.put_file(key, path, on_bytes)
        except S3UploadFailedError as err:
            cause = err.__cause__ or err.__context__  # boto3 raises it while handling the ClientError
            if isinstance(cause, ClientError):
                raise cause from None
            raise
        finally:
            self.s3.meta.events.unregister(event, unique_id=handler_id)

    def _settle_existing(self, key: str, sha256: str, path: str, size: int,
                         on_bytes: Callable[[int], None] | None) -> None:
        """After a 412 the key holds an object: the same bytes (another writer's, or this write's own landed
        attempt), or a corrupt one, replaced here when this caller may delete it (a designer); else BlobCorrupt."""
        from botocore.exceptions import ClientError

        if self.has_blob(sha256, size, path):
            return
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as err:
            if _code(err) in ("AccessDenied", "403"):
                raise BlobCorrupt(f"blob {sha256} in the store does not hold the bytes of that digest and only a "
                                  "designer may replace it: publish the environment again from a designer's "
                                  "ComfyUI") from None
            raise
        self._create_blob(key, sha256, path, size, on_bytes)

    @_unavailable_on_aws_error
    def has_blob(self, sha256: str, size: int, path: str | None = None) -> bool:
        from botocore.exceptions import ClientError

        key = self._key(blob_key(sha256))
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as err:
            if _code(err) in MISSING:
                return False
            raise
        if head["ContentLength"] != size:
            return False
        checksum, etag = head.get("ChecksumSHA256") or "", head.get("ETag") or ""
        # S3 User Guide, "Checking object integrity": a single PUT's SHA-256 is the full object's (here, the
        # digest S3 checked on arrival); a multipart upload's is composite, "...-N" (ETag "...-N" too).
        multipart = "-" in etag or "-" in checksum or head.get("ChecksumType") == "COMPOSITE"
        if checksum and not multipart:
            return base64.b64decode(checksum).hex() == sha256
        if (key, etag) in self._verified:
            return True
        if checksum and path is not None:
            ok = self._composite_matches(key, checksum, sha256, path)
        else:
            ok = self._hashes_to(key, sha256)
        if ok:
            self._verified.add((key, etag))
        return ok

    def _composite_matches(self, key: str, checksum: str, sha256: str, path: str) -> bool:
        """The object's composite SHA-256 against the one of the caller's file cut into the object's own parts
        (part 1's size, from a HEAD of that part): equal only for the same bytes, as S3 checked each part's
        SHA-256 on upload; and the file still hashes to the digest."""
        import hashlib

        first = self.s3.head_object(Bucket=self.bucket, Key=key, PartNumber=1)
        part_size, parts = int(first["ContentLength"]), int(first.get("PartsCount") or 1)
        whole, digests = hashlib.sha256(), []
        with open(path, "rb") as f:
            while chunk := f.read(part_size):
                whole.update(chunk)
                digests.append(hashlib.sha256(chunk).digest())
        composite = base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode()
        return (whole.hexdigest() == sha256 and len(digests) == parts
                and checksum.split("-")[0] == composite)

    def _hashes_to(self, key: str, sha256: str) -> bool:
        """Read the object and hash it: the check that needs no local copy (a multipart object without one)."""
        import hashlib

        h = hashlib.sha256()
        body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"]
        while chunk := body.read(8 * 1024 * 1024):
            h.update(chunk)
        return h.hexdigest() == sha256

    @_unavailable_on_aws_error
    def get_file(self, key: str, path: str, on_bytes: Callable[[int], None] | None = None) -> None:
        import os
        import uuid

        from botocore.exceptions import ClientError

        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        try:
            self.s3.download_file(self.bucket, self._key(key), tmp, Callback=on_bytes, Config=self.transfer_config())
            os.replace(tmp, path)
        except ClientError as err:
            if _code(err) in MISSING:
                raise KeyNotFound(key) from None
            raise
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def list(self, prefix: str) -> list[str]:
        return sorted(self.list_stamps(prefix))

    @_unavailable_on_aws_error
    def list_page(self, folder: str, start_after: str = "", limit: int = 1000) -> builtins.list[str]:
        args = {"Bucket": self.bucket, "Prefix": self.prefix + folder, "Delimiter": "/", "MaxKeys": min(limit, 1000)}
        if start_after:
            args["StartAfter"] = self.prefix + start_after
        keys: list[str] = []
        while len(keys) < limit:
            r = self.s3.list_objects_v2(**args)
            keys += [o["Key"][len(self.prefix):] for o in r.get("Contents", [])]
            if not r.get("IsTruncated"):
                break
            args = {**args, "ContinuationToken": r["NextContinuationToken"]}
        return keys[:limit]

    @_unavailable_on_aws_error
    def get_if_changed(self, key: str, etag: str | None) -> Versioned | None:
        from botocore.exceptions import ClientError

        args = {"Bucket": self.bucket, "Key": self._key(key)}
        if etag:
            args["IfNoneMatch"] = etag
        try:
            r = self.s3.get_object(**args)
        except ClientError as err:
            if _code(err) in ("304", "NotModified"):
                return None
            if _code(err) in MISSING:
                raise KeyNotFound(key) from None
            raise
        return Versioned(r["Body"].read(), r["ETag"])

    @_unavailable_on_aws_error
    def list_modified(self, prefix: str) -> dict[str, datetime]:
        out = {}
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for o in page.get("Contents", []):
                out[o["Key"][len(self.prefix):]] = o["LastModified"]
        return dict(sorted(out.items()))

    @_unavailable_on_aws_error
    def sizes(self, prefix: str = "") -> dict[str, int]:
        # ListObjectsV2 says each object's Size: one request per 1,000 objects, no HEAD per object.
        out = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for o in page.get("Contents", []):
                out[o["Key"][len(self.prefix):]] = o["Size"]
        return dict(sorted(out.items()))

    @_unavailable_on_aws_error
    def list_stamps(self, prefix: str) -> dict[str, str]:
        out = {}
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for o in page.get("Contents", []):
                out[o["Key"][len(self.prefix):]] = o["ETag"]
        return dict(sorted(out.items()))
