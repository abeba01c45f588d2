"""Publish progress moves with the bytes: an S3 blob sent in one PUT reports its bytes as they are read
from it by the HTTP client (in blocks, on a real connection), and a body read again (a retry, a checksum
pass) never reports the same bytes twice."""

from __future__ import annotations

from comfyui_sagemaker.aws.s3_store import ProgressBody
from comfyui_sagemaker.core.fs.hashing import file_sha256


def test_bytes_are_reported_as_they_are_read_and_never_twice():
    seen: list[int] = []
    body = ProgressBody(b"x" * 100_000, seen.append)
    while body.read(16384):  # what urllib3 does on a real connection
        pass
    assert sum(seen) == 100_000 and len(seen) == 7
    body.seek(0)  # botocore's retry
    body.read()
    body.finish()
    assert sum(seen) == 100_000


def test_a_blob_put_in_one_request_reports_all_its_bytes(store, tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"m" * 3_000_000)
    seen: list[int] = []
    store.put_blob(file_sha256(path), str(path), on_bytes=seen.append)
    assert sum(seen) == 3_000_000
