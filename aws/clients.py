"""boto3, imported only when S3 or SageMaker is first used; clients made once."""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_clients: dict[tuple[str, str], Any] = {}


def client(service: str, region: str = "") -> Any:
    """A shared boto3 client with standard retries. Endpoint overrides come from
    boto3's own AWS_ENDPOINT_URL[_<SERVICE>] variables (tests point them at moto)."""
    key = (service, region)
    with _lock:
        if key not in _clients:
            import boto3
            from botocore.config import Config

            cfg = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32)
            _clients[key] = boto3.session.Session().client(service, region_name=region or None, config=cfg)
        return _clients[key]


def reset() -> None:
    """Forget the clients (tests that change the environment between cases)."""
    with _lock:
        _clients.clear()
