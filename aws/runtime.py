"""Running one prompt on a SageMaker endpoint: real-time (streamed) or async (through S3).

Real-time: InvokeEndpointWithResponseStream carries the worker's NDJSON
event stream, so progress shows live. Async: InvokeEndpointAsync carries the
request JSON inline (up to INLINE_LIMIT bytes; a larger one goes to the store
and the call points at it), and the run is followed through
the OutputLocation / FailureLocation that the call returns (with backoff),
relaying the coarse progress the worker writes to the store meanwhile.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..core.endpoints import InvocationFailed
from ..core.store import Store
from ..core.worker_contract import (  # PROGRESS_PREFIX: where the async progress is, for tests too
    PROGRESS_PREFIX,  # noqa: F401
    Invocation,
    WorkerEvent,
    WorkerResult,
    read_stream,
)
from .async_watch import AsyncWatch, relay_progress
from .errors import answer
from .errors import error_code as _code
from .errors import error_message as _message

REALTIME_LIMIT_S = 60
NEAR_LIMIT_S = REALTIME_LIMIT_S - 5  # SageMaker's clock starts after ours: a cut from here on is the limit
# InvokeEndpointAsync's ranges (botocore's service model): the queue time, and the run time once picked up.
REQUEST_TTL_S = (60, 21600)
INVOCATION_TIMEOUT_S = (1, 3600)
REQUEST_PREFIX = "async/requests/"
# InvokeEndpointAsync takes a request of up to this many bytes inline (`Body`, exclusive with `InputLocation`;
# Developer Guide, "Invoke an Asynchronous Endpoint"): an artist's prompt is a few kB. Larger ones go through S3.
INLINE_LIMIT = 128_000
# What SageMaker says when a real-time invocation runs over its limit: "Your model primary did not complete
# sending the inference response in the allotted time." (stream) / "Your invocation timed out while waiting
# for a response from container primary." (InvokeEndpoint).
# Waits for an accepted async request's result: (endpoint, execution id, resume, on_event) -> its result.
Follow = Callable[[str, str, dict[str, Any], Callable[[WorkerEvent], None]], WorkerResult]
LIMIT_WORDS = ("in the allotted time", "timed out while waiting for a response")


def _over_the_limit(detail: str) -> InvocationFailed:
    return InvocationFailed(
        f"the prompt ran over SageMaker's real-time limit of {REALTIME_LIMIT_S} s (SageMaker: {detail}); publish the "
        "environment with mode async for long workflows (up to an hour)")


def realtime_error(err: Exception, elapsed: float) -> InvocationFailed:
    """SageMaker's answer in the user's words. Whether the run hit the time limit is read from the
    error code and how long the run took, or from AWS's own words for it (the texts are AWS's to change,
    so either is enough)."""
    code, message = _code(err), _message(err)
    near_limit = elapsed >= NEAR_LIMIT_S or any(words in message.lower() for words in LIMIT_WORDS)
    if code == "ModelStreamError":  # an exception frame in the stream: botocore's EventStreamError
        # Its ErrorCode (ModelInvocationTimeExceeded | StreamBroken) does not survive botocore's parser.
        if near_limit:
            return _over_the_limit(message)
        return InvocationFailed(f"the worker's stream broke after {elapsed:.0f} s (SageMaker: {message})")
    if code == "InternalStreamFailure":
        return InvocationFailed(f"SageMaker's stream failed ({message}); retry the prompt")
    if code == "ModelError":  # 424: the container answered an error, or not in time
        if near_limit:
            return _over_the_limit(message)
        response = answer(err)
        if "OriginalStatusCode" in response:
            return InvocationFailed(f"the worker answered HTTP {response['OriginalStatusCode']}: "
                                    f"{str(response.get('OriginalMessage', ''))[:2000]}")
        return InvocationFailed(f"the worker failed: {message}")
    return InvocationFailed(f"SageMaker refused the request ({code or 'error'}): {message}")


def _lines(stream: Iterable[dict]) -> Iterator[bytes]:
    """The worker's NDJSON lines from the response stream's PayloadParts (which cut lines anywhere)."""
    buffer = b""
    for event in stream:
        if "PayloadPart" not in event:
            continue
        buffer += event["PayloadPart"]["Bytes"]
        *lines, buffer = buffer.split(b"\n")
        yield from lines


def invoke_realtime(runtime: Any, endpoint: str, body: Invocation, on_event: Callable[[WorkerEvent], None],
                    clock: Callable[[], float] = time.monotonic) -> WorkerResult:
    from botocore.exceptions import BotoCoreError, ClientError
    from urllib3.exceptions import HTTPError

    started = clock()
    try:
        execution_id = body.get("execution_id")
        extra = {"InferenceId": execution_id[:64]} if execution_id else {}
        response = runtime.invoke_endpoint_with_response_stream(
            EndpointName=endpoint, Body=json.dumps(body).encode(), ContentType="application/json",
            Accept="application/x-ndjson", **extra)
        # An exception frame (ModelStreamError, InternalStreamFailure) raises EventStreamError here.
        result = read_stream(_lines(response["Body"]), on_event)
    except ClientError as err:
        raise realtime_error(err, clock() - started) from None
    except (BotoCoreError, HTTPError) as err:  # the body is read by urllib3 itself: its errors are not wrapped
        raise InvocationFailed(f"SageMaker did not answer: {err}") from None
    except ValueError as err:  # ShapeInvalid, ProtocolUnsupported, a line that is not JSON
        raise InvocationFailed(f"the endpoint's worker answered what this extension cannot read: {err}") from None
    if result is None:
        raise InvocationFailed("the endpoint closed its stream without a result")
    return result


def takes_inline(runtime: Any) -> bool:
    """Whether this client's InvokeEndpointAsync has `Body` (botocore's service model: newer than the lowest
    boto3 allowed, whose requests all go through S3)."""
    shape = runtime.meta.service_model.operation_model("InvokeEndpointAsync").input_shape
    return "Body" in shape.members


def invoke_async(runtime: Any, s3: Any, store: Store, store_uri: str, endpoint: str, body: Invocation,
                 on_event: Callable[[WorkerEvent], None], timeout: float = 3900,
                 still_there: Callable[[], bool] = lambda: True,
                 follow: Follow | None = None) -> WorkerResult:
    """`follow(endpoint, execution_id, resume, on_event)` waits for the result once SageMaker accepted the
    request: the process's one watch (aws/async_watch.py); without it, a watch of this run's own that asks
    `still_there()` whether the endpoint exists."""
    from botocore.exceptions import BotoCoreError, ClientError

    execution_id = str(body.get("execution_id") or "")
    # Nobody waits past `timeout`: SageMaker drops the request then too (its default is 6 hours of queue).
    patience = math.ceil(timeout)
    ttl = min(max(patience, REQUEST_TTL_S[0]), REQUEST_TTL_S[1])
    run_limit = min(max(patience, INVOCATION_TIMEOUT_S[0]), INVOCATION_TIMEOUT_S[1])
    payload = json.dumps(body).encode()
    if len(payload) <= INLINE_LIMIT and takes_inline(runtime):  # no PUT to the store, no wait for it
        where: dict[str, Any] = {"Body": payload}
    else:
        request_key = f"{REQUEST_PREFIX}{execution_id}.json"
        store.put(request_key, payload)
        where = {"InputLocation": f"{store_uri}/{request_key}"}
    try:
        r = runtime.invoke_endpoint_async(
            EndpointName=endpoint, ContentType="application/json", Accept="application/json",
            InferenceId=execution_id[:64], InvocationTimeoutSeconds=run_limit, RequestTTLSeconds=ttl, **where)
    except (ClientError, BotoCoreError) as err:
        raise InvocationFailed(f"SageMaker refused the async request: {_message(err)}") from None
    # Accepted: the result lands in S3 whoever waits for it, so another process can follow the run from here
    # if this one dies (core/followers.py); the execution record keeps where to look and until when.
    resume = {"output": r["OutputLocation"], "failure": r.get("FailureLocation") or "",
              "until": time.time() + timeout}
    on_event({"type": "sagemaker.resumable", "data": {"resume": resume}})
    if follow is not None:
        return follow(endpoint, execution_id, resume, on_event)
    return follow_async(s3, store, endpoint, execution_id, resume, on_event, still_there)


def follow_async(s3: Any, store: Store, endpoint: str, execution_id: str, resume: dict[str, Any],
                 on_event: Callable[[WorkerEvent], None],
                 still_there: Callable[[], bool] = lambda: True) -> WorkerResult:
    """Wait for an accepted async request's result (`resume`: its output and failure locations and the time
    it is given up), relaying the worker's progress; from the invocation, or from a process taking it over.
    A watch of its own: a process with several runs shares one (SageMakerEndpoints.watch)."""
    return AsyncWatch(s3, store, lambda _endpoint: still_there()).follow(endpoint, execution_id, resume, on_event)


_relay_progress = relay_progress  # its old name here
