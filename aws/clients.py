"""boto3, imported only when S3 or SageMaker is first used; clients made once."""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_clients: dict[tuple[str, str], Any] = {}

# SageMaker runtime: a model may take the whole 60 s real-time limit before it answers, and AWS
# advises a client socket timeout of 70 s for that (InvokeEndpoint's API reference).
RUNTIME_READ_TIMEOUT_S = 70
RUNTIME_CONNECT_TIMEOUT_S = 10
# Calls that start a run. botocore's standard retry mode retries every HTTPClientError, which
# includes ReadTimeoutError and ConnectionClosedError: the request may have reached the endpoint
# and be running already, so a retry would run the prompt a second time (an async request would
# be queued twice). Throttling and 5xx answers are still retried.
_INVOCATIONS = ("InvokeEndpoint", "InvokeEndpointWithResponseStream", "InvokeEndpointAsync")


def _no_retry_once_sent(caught_exception: Exception | None = None, **kwargs: Any) -> None:
    from botocore.exceptions import ConnectionClosedError, ReadTimeoutError

    if isinstance(caught_exception, (ReadTimeoutError, ConnectionClosedError)):
        # Raised here, before the standard handler (registered on the less specific event) runs: the
        # call fails as it would after its last attempt. Returning False is no veto in botocore 1.35
        # (requirements.txt's floor reads it as "retry after 0 s") and would still spend retry quota.
        raise caught_exception


def client(service: str, region: str = "") -> Any:
    """A shared boto3 client with standard retries. Endpoint overrides come from
    boto3's own AWS_ENDPOINT_URL[_<SERVICE>] variables (tests point them at moto)."""
    key = (service, region)
    with _lock:
        if key not in _clients:
            import boto3
            from botocore.config import Config

            cfg = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32)
            if service == "sagemaker-runtime":
                cfg = cfg.merge(Config(read_timeout=RUNTIME_READ_TIMEOUT_S, connect_timeout=RUNTIME_CONNECT_TIMEOUT_S))
            made = boto3.session.Session().client(service, region_name=region or None, config=cfg)
            if service == "sagemaker-runtime":
                for operation in _INVOCATIONS:
                    made.meta.events.register(f"needs-retry.sagemaker-runtime.{operation}", _no_retry_once_sent)
            _clients[key] = made
        return _clients[key]


def reset() -> None:
    """Forget the clients (tests that change the environment between cases)."""
    with _lock:
        _clients.clear()
