"""Runs whose ComfyUI never came back: how long a run may be left in flight before a designer's maintenance
expires it (ExecutionService.expire_abandoned).

A run's follower renews a lease while it follows (core/followers.py); when it dies, any live process's sweep takes
the run over or fails it. What no sweep reaches stays `queued` or `running` for good: a run whose follower marker
went with a store failure, a record of an older version that names no follower, a run of an artist's ComfyUI that
never came back while no designer's ComfyUI ran to take it over. A designer's maintenance looks at every run in
flight (one listing of the in-flight folder, a read per run in flight: never the records): a run whose follower's
lease is gone or expired (its ComfyUI's heartbeat) and that began longer ago than its endpoint's run time limit is
failed with the reason EXPIRED names. Past that limit its endpoint has ended it anyway (a worker stops a run at its
invocation timeout, SageMaker drops an async request at its TTL), so nothing done is thrown away.

The limits, per endpoint kind: a local endpoint's run (a ComfyUI's own or shared, an on-premises `worker serve`)
1 hour, the worker's WORKER_INVOCATION_TIMEOUT default; a real-time SageMaker run 60 s; an async one 6 hours in
SageMaker's queue (the request's TTL) and 1 hour running. A run whose environment version cannot be read gets
DEFAULT_LIMIT_S, the longest of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .records import EndpointConfig

LOCAL_LIMIT_S = 3600.0  # worker/settings.py's invocation_timeout default
REALTIME_LIMIT_S = 60.0  # SageMaker's real-time invocation limit
ASYNC_LIMIT_S = 6 * 3600.0 + 3600.0  # RequestTTLSeconds' maximum, then InvocationTimeoutSeconds' (aws/runtime.py)
DEFAULT_LIMIT_S = ASYNC_LIMIT_S
CODE = "expired"


def limit_of(endpoint: EndpointConfig | None) -> float:
    """How long a run on an endpoint of this config may take, queue included; the longest for an unknown one."""
    if endpoint is None:
        return DEFAULT_LIMIT_S
    if endpoint.get("kind") == "local":
        return LOCAL_LIMIT_S
    if endpoint.get("kind") == "sagemaker":
        return REALTIME_LIMIT_S if endpoint.get("mode") == "realtime" else ASYNC_LIMIT_S
    return DEFAULT_LIMIT_S


def duration(seconds: float) -> str:
    """60 s, 1 h, 7 h, 90 min: as a person reads a limit."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds % 3600 == 0:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 60:.0f} min"


def reason(instance: str, limit: float) -> str:
    """What the record of an expired run says."""
    return f"expired: ComfyUI {instance} did not come back within {duration(limit)}"


def began(record: Mapping[str, Any]) -> float | None:
    """When a run began to count against its limit (started, else queued), as epoch seconds; None if unreadable."""
    for field in ("started_at", "created_at"):
        value = record.get(field)
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            if parsed.tzinfo is not None:
                return parsed.timestamp()
    return None
