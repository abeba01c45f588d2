"""Running one prompt on a SageMaker endpoint: real-time (streamed) or async (through S3).

Real-time: InvokeEndpointWithResponseStream carries the worker's NDJSON
event stream, so progress shows live. Async: the request JSON goes to the
store, InvokeEndpointAsync points at it, and the run is followed through
the OutputLocation / FailureLocation that the call returns (with backoff),
relaying the coarse progress the worker writes to the store meanwhile.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from ..core.endpoints import InvocationFailed
from ..core.store import Store

REALTIME_LIMIT_S = 60
PROGRESS_PREFIX = "async/progress/"
REQUEST_PREFIX = "async/requests/"


def _code(err: Exception) -> str:
    return str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))


def _message(err: Exception) -> str:
    e = getattr(err, "response", {}).get("Error", {})
    return e.get("Message") or str(err)


def realtime_error(err: Exception) -> InvocationFailed:
    message = _message(err)
    if "timed out" in message.lower() or "timeout" in message.lower():
        return InvocationFailed(
            f"the prompt ran over SageMaker's real-time limit of {REALTIME_LIMIT_S} s ({message}); publish the "
            "environment with mode async for long workflows (up to an hour)")
    return InvocationFailed(f"SageMaker {_code(err) or 'error'}: {message}")


def invoke_realtime(runtime: Any, endpoint: str, body: dict, on_event: Callable[[dict], None]) -> dict:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        extra = {"InferenceId": str(body["execution_id"])[:64]} if body.get("execution_id") else {}
        response = runtime.invoke_endpoint_with_response_stream(
            EndpointName=endpoint, Body=json.dumps(body).encode(), ContentType="application/json",
            Accept="application/x-ndjson", **extra)
        buffer = b""
        for event in response["Body"]:
            if "PayloadPart" in event:
                buffer += event["PayloadPart"]["Bytes"]
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    item = json.loads(line)
                    if item.get("type") == "result":
                        return item["data"]
                    on_event(item)
            elif "ModelStreamError" in event:
                raise InvocationFailed(f"the model's stream failed: {event['ModelStreamError'].get('Message')}")
            elif "InternalStreamFailure" in event:
                raise InvocationFailed(f"SageMaker's stream failed: {event['InternalStreamFailure'].get('Message')}")
    except ClientError as err:
        raise realtime_error(err) from None
    except BotoCoreError as err:
        raise InvocationFailed(f"SageMaker did not answer: {err}") from None
    raise InvocationFailed("the endpoint closed its stream without a result")


def _s3_location(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    return parts.netloc, parts.path.lstrip("/")


def invoke_async(runtime: Any, s3: Any, store: Store, store_uri: str, endpoint: str, body: dict,
                 on_event: Callable[[dict], None], timeout: float = 3900,
                 still_there: Callable[[], bool] = lambda: True, sleep: Callable[[float], None] = time.sleep) -> dict:
    from botocore.exceptions import BotoCoreError, ClientError

    execution_id = str(body.get("execution_id") or "")
    request_key = f"{REQUEST_PREFIX}{execution_id}.json"
    store.put(request_key, json.dumps(body).encode())
    try:
        r = runtime.invoke_endpoint_async(
            EndpointName=endpoint, InputLocation=f"{store_uri}/{request_key}", ContentType="application/json",
            Accept="application/json", InferenceId=execution_id[:64], InvocationTimeoutSeconds=3600)
    except (ClientError, BotoCoreError) as err:
        raise InvocationFailed(f"SageMaker refused the async request: {_message(err)}") from None
    output, failure = _s3_location(r["OutputLocation"]), _s3_location(r.get("FailureLocation") or "")
    deadline = time.monotonic() + timeout
    delay, seen = 0.2, 0
    while time.monotonic() < deadline:
        for (bucket, key), failed in ((output, False), (failure, True)):
            if not key:
                continue
            try:
                data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            except ClientError as err:
                if _code(err) in ("NoSuchKey", "404"):
                    continue
                raise InvocationFailed(f"cannot read the async result: {_message(err)}") from None
            if failed:
                raise InvocationFailed(f"the endpoint reported a failure: {data.decode(errors='replace')[:2000]}")
            _relay_progress(store, execution_id, seen, on_event)  # what came after the last look
            return json.loads(data)
        seen = _relay_progress(store, execution_id, seen, on_event)
        if not still_there():
            raise InvocationFailed(f"endpoint {endpoint} was deleted while the run waited")
        sleep(delay)
        delay = min(delay * 1.5, 5.0)
    raise InvocationFailed(f"no async result after {timeout:.0f} s; the run is marked failed")


def _relay_progress(store: Store, execution_id: str, seen: int, on_event: Callable[[dict], None]) -> int:
    """Relay the events the worker wrote to the store since the last look."""
    try:
        events = json.loads(store.get(f"{PROGRESS_PREFIX}{execution_id}.json").data)
    except Exception:  # not written yet, or mid-write: look again next time
        return seen
    for event in events[seen:]:
        on_event(event)
    return max(seen, len(events))
