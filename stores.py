"""Which store a configuration or a URI names: the one place that asks "folder or S3?" of a store.

Below the composition root (services.py) and beside the worker, which opens its environment's store from the
manifest URI it is given; both import it, neither imports the other. The store classes are imported when
asked for (boto3 is heavy).
"""

from __future__ import annotations

import os
from pathlib import Path

from .core.config import Config
from .core.store import Store


def make_store(config: Config) -> Store:
    if config.store == "s3":
        from .aws.s3_store import S3Store

        return S3Store(config.s3_bucket, config.s3_prefix, config.region, sse=config.s3_sse,
                       kms_key_id=config.s3_kms_key_id, max_concurrency=config.s3_max_concurrency)
    from .local.folder_store import FolderStore

    return FolderStore(Path(config.store_path))


def store_uri(config: Config) -> str:
    """Where a worker finds this store: file:///abs/path or s3://bucket/prefix."""
    if config.store == "s3":
        return f"s3://{config.s3_bucket}/{config.s3_prefix.strip('/')}".rstrip("/")
    return Path(config.store_path).resolve().as_uri()


def split_manifest_uri(uri: str) -> tuple[Store, str]:
    """(store, key) for a manifest URI: `<store uri>/environments/<env>/versions/vNNNNNN.json`."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(uri)
    marker = "/environments/"
    path = unquote(parts.path)
    if marker not in path or parts.scheme not in ("file", "s3"):
        raise ValueError(f"not a manifest URI (file:// or s3://, .../environments/<env>/versions/...): {uri}")
    root, key = path.split(marker, 1)
    key = "environments/" + key
    if parts.scheme == "file":
        from .local.folder_store import FolderStore

        return FolderStore(root or "/"), key
    from .aws.s3_store import S3Store

    # The worker's store: the deploy passes the store's encryption settings in its environment.
    return S3Store(parts.netloc, root.strip("/"), os.environ.get("AWS_REGION", ""),
                   sse=os.environ.get("WORKER_S3_SSE", ""), kms_key_id=os.environ.get("WORKER_S3_KMS_KEY_ID", "")), key
