"""SageMaker runtime failures as the user meets them, through botocore's own parsers.

The HTTP layer is replaced at botocore's `before-send` hook, so the bytes AWS would send
(event-stream frames, `x-amzn-ErrorType` error bodies) go through the real client: its
rest-json parser, its event-stream decoder and its retry handlers. The texts are the ones
AWS documents or users quote (see tests/harness/runtime_emulator.py).
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import botocore.session
import pytest
from botocore.awsrequest import AWSResponse, HeadersDict
from botocore.exceptions import EventStreamError, ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import Stubber
from comfyui_sagemaker.aws import clients, runtime
from comfyui_sagemaker.core.endpoints import InvocationFailed
from harness.runtime_emulator import (
    STREAM_TIMEOUT_MESSAGE,
    RuntimeEmulator,
    event_message,
    payload_part,
)

pytestmark = pytest.mark.stubber

ENDPOINT = "comfy-portraits-v1-abc123"
NOT_FOUND = f"Endpoint {ENDPOINT} of account 123456789012 not found."
CONTAINER_TIMEOUT = ("Your invocation timed out while waiting for a response from container primary. Review the "
                     "latency metrics for each container in Amazon CloudWatch, resolve the issue, and try again.")
LOGS = (f"https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#logEventViewer:group="
        f"/aws/sagemaker/Endpoints/{ENDPOINT} in account 123456789012")


class Clock:
    """time.monotonic for invoke_realtime: the start, then the moment the error arrives."""

    def __init__(self, *times: float):
        self.times = list(times)

    def __call__(self) -> float:
        return self.times.pop(0) if len(self.times) > 1 else self.times[0]


class RawStream:
    """What botocore reads a response body from (urllib3's `stream()`), fed in small chunks."""

    def __init__(self, data: bytes, chunk: int = 7):
        self.data, self.chunk = data, chunk

    def stream(self, *args, **kwargs):
        for i in range(0, len(self.data), self.chunk):
            yield self.data[i:i + self.chunk]

    def close(self) -> None:
        pass


@pytest.fixture
def runtime_client(aws_env):
    """The project's own sagemaker-runtime client (its config, its retry rules), with a scripted wire."""
    clients.reset()
    client = clients.client("sagemaker-runtime", "us-east-1")
    answers, sent = [], []

    def send(request, **kwargs):
        sent.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        status, headers, body = answer
        return AWSResponse(request.url, status, HeadersDict(headers), RawStream(body))

    client.meta.events.register("before-send.sagemaker-runtime", send)
    yield client, answers, sent
    clients.reset()


def stream_answer(*frames: bytes):
    return 200, {"Content-Type": "application/vnd.amazon.eventstream",
                 "X-Amzn-SageMaker-Content-Type": "application/x-ndjson",
                 "x-Amzn-Invoked-Production-Variant": "AllTraffic"}, b"".join(frames)


def error_answer(status: int, kind: str, **body):
    return status, {"Content-Type": "application/json", "x-amzn-ErrorType": kind,
                    "x-amzn-RequestId": "3c1e7a52-0000-4000-8000-000000000000"}, json.dumps(body).encode()


def exception_frame(kind: str, **body) -> bytes:
    return event_message({":exception-type": kind, ":content-type": "application/json",
                          ":message-type": "exception"}, json.dumps(body).encode())


def ndjson(*items: dict) -> bytes:
    return b"".join(json.dumps(i).encode() + b"\n" for i in items)


def invoke(client, clock):
    events = []
    try:
        return runtime.invoke_realtime(client, ENDPOINT, {"execution_id": "x", "prompt": {}}, events.append,
                                       clock=clock), events
    except InvocationFailed as err:
        err.events = events
        raise


# real-time: the stream

def test_stream_result_and_events(runtime_client):
    client, answers, sent = runtime_client
    answers.append(stream_answer(payload_part(ndjson({"type": "progress", "data": {"value": 1}})[:9]),
                                 payload_part(ndjson({"type": "progress", "data": {"value": 1}})[9:]),
                                 payload_part(ndjson({"type": "result", "data": {"status": "succeeded"}}))))
    result, events = invoke(client, Clock(0, 3))
    assert result == {"status": "succeeded"} and events == [{"type": "progress", "data": {"value": 1}}]
    assert sent[0].url.endswith(f"/endpoints/{ENDPOINT}/invocations-response-stream")


def test_stream_cut_at_the_limit_names_it_and_suggests_async(runtime_client):
    """The exception frame AWS sends when the model runs out of time: botocore raises EventStreamError."""
    client, answers, _ = runtime_client
    answers.append(stream_answer(payload_part(ndjson({"type": "progress", "data": {"value": 1}})),
                                 exception_frame("ModelStreamError", Message=STREAM_TIMEOUT_MESSAGE,
                                                 ErrorCode="ModelInvocationTimeExceeded")))
    with pytest.raises(InvocationFailed) as info:
        invoke(client, Clock(0, 60.4))
    message = str(info.value)
    assert "real-time limit of 60 s" in message and "mode async" in message
    assert STREAM_TIMEOUT_MESSAGE in message
    assert info.value.events == [{"type": "progress", "data": {"value": 1}}]


def test_stream_broken_early_is_not_blamed_on_the_limit(runtime_client):
    """A stream broken early (ErrorCode StreamBroken, which botocore's parser drops) is not the time limit:
    neither the time the run took nor AWS's words for the limit say so."""
    client, answers, _ = runtime_client
    broken = "The stream from the model container was broken."
    answers.append(stream_answer(exception_frame("ModelStreamError", Message=broken, ErrorCode="StreamBroken")))
    with pytest.raises(InvocationFailed) as info:
        invoke(client, Clock(0, 4))
    message = str(info.value)
    assert "async" not in message and "stream broke after 4 s" in message and broken in message


def test_internal_stream_failure_says_retry(runtime_client):
    client, answers, _ = runtime_client
    answers.append(stream_answer(exception_frame("InternalStreamFailure", Message="Internal stream failure.")))
    with pytest.raises(InvocationFailed) as info:
        invoke(client, Clock(0, 61))
    message = str(info.value)
    assert message.startswith("SageMaker's stream failed") and "retry" in message and "async" not in message


def test_stream_without_a_result(runtime_client):
    client, answers, _ = runtime_client
    answers.append(stream_answer(payload_part(ndjson({"type": "progress", "data": {}}))))
    with pytest.raises(InvocationFailed, match="closed its stream without a result"):
        invoke(client, Clock(0, 2))


# real-time: errors on the initial call (botocore's rest-json error parser)

def test_model_error_shows_the_workers_own_error(runtime_client):
    client, answers, _ = runtime_client
    original = '{"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation"}}'
    answers.append(error_answer(424, "ModelError", OriginalStatusCode=400, OriginalMessage=original,
                                Message=f'Received client error (400) from primary with message "{original}". '
                                        f'See {LOGS} for more information.',
                                LogStreamArn=f"arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/"
                                             f"Endpoints/{ENDPOINT}"))
    with pytest.raises(InvocationFailed) as info:
        invoke(client, Clock(0, 1.5))
    assert str(info.value) == f"the worker answered HTTP 400: {original}"


def test_container_timeout_at_the_limit_suggests_async(runtime_client):
    client, answers, _ = runtime_client
    answers.append(error_answer(424, "ModelError", OriginalStatusCode=0, OriginalMessage=CONTAINER_TIMEOUT,
                                Message=f'Received server error (0) from primary with message "{CONTAINER_TIMEOUT}". '
                                        f'See {LOGS} for more information.'))
    with pytest.raises(InvocationFailed) as info:
        invoke(client, Clock(0, 60.2))
    assert "real-time limit of 60 s" in str(info.value) and "mode async" in str(info.value)


def test_unknown_endpoint(runtime_client):
    client, answers, _ = runtime_client
    answers.append(error_answer(400, "ValidationError", Message=NOT_FOUND))
    with pytest.raises(InvocationFailed) as info:
        invoke(client, Clock(0, 0.1))
    assert str(info.value) == f"SageMaker refused the request (ValidationError): {NOT_FOUND}"


# the client: timeouts and retries

def test_runtime_client_reads_past_the_real_time_limit(aws_env):
    clients.reset()
    try:
        config = clients.client("sagemaker-runtime", "us-east-1").meta.config
        assert config.read_timeout == 70 and config.connect_timeout <= 10
        assert config.retries["mode"] == "standard"
        for service in ("s3", "sagemaker"):  # keep botocore's defaults
            other = clients.client(service, "us-east-1").meta.config
            assert (other.read_timeout, other.connect_timeout) == (60, 60)
    finally:
        clients.reset()


@pytest.mark.parametrize("call", [
    lambda c: c.invoke_endpoint_with_response_stream(EndpointName=ENDPOINT, Body=b"{}"),
    lambda c: c.invoke_endpoint_async(EndpointName=ENDPOINT, InputLocation="s3://b/k"),
    lambda c: c.invoke_endpoint(EndpointName=ENDPOINT, Body=b"{}"),
], ids=["stream", "async", "invoke"])
def test_an_invocation_is_not_sent_twice_after_a_read_timeout(runtime_client, call):
    """The request may be running already: a second one would run the prompt twice."""
    client, answers, sent = runtime_client
    answers.extend([ReadTimeoutError(endpoint_url="https://runtime.sagemaker.us-east-1.amazonaws.com")] * 5)
    with pytest.raises(ReadTimeoutError):
        call(client)
    assert len(sent) == 1


def test_an_invocation_refused_by_a_busy_service_is_retried(runtime_client):
    client, answers, sent = runtime_client
    answers.extend([error_answer(503, "ServiceUnavailable", Message="Service Unavailable"),
                    (202, {"X-Amzn-SageMaker-OutputLocation": "s3://b/o.out"}, b'{"InferenceId": "x"}')])
    assert client.invoke_endpoint_async(EndpointName=ENDPOINT, InputLocation="s3://b/k")["OutputLocation"]
    assert len(sent) == 2


def test_realtime_read_timeout_is_an_invocation_failure(runtime_client):
    client, answers, _ = runtime_client
    answers.append(ReadTimeoutError(endpoint_url="https://runtime.sagemaker.us-east-1.amazonaws.com"))
    with pytest.raises(InvocationFailed, match="did not answer"):
        invoke(client, Clock(0, 70))


# async: the request's lifetime matches the client's patience

def _limits(member: str) -> tuple[int, int]:
    model = botocore.session.get_session().get_service_model("sagemaker-runtime")
    meta = model.operation_model("InvokeEndpointAsync").input_shape.members[member].metadata
    return meta["min"], meta["max"]


@pytest.mark.parametrize("timeout, ttl, invocation", [(3900, 3900, 3600), (30, 60, 30), (86400, 21600, 3600)])
def test_async_request_expires_when_the_client_gives_up(aws_env, tmp_path, timeout, ttl, invocation):
    from comfyui_sagemaker.local.folder_store import FolderStore

    assert _limits("RequestTTLSeconds")[0] <= ttl <= _limits("RequestTTLSeconds")[1]
    assert _limits("InvocationTimeoutSeconds")[0] <= invocation <= _limits("InvocationTimeoutSeconds")[1]
    sm_runtime = boto3.client("sagemaker-runtime", region_name="us-east-1")
    s3 = boto3.client("s3", region_name="us-east-1")
    store = FolderStore(tmp_path / "store")
    request = {"execution_id": "x", "prompt": {}}
    where = {"Body": json.dumps(request).encode()} if runtime.takes_inline(sm_runtime) \
        else {"InputLocation": "s3://bkt/pre/async/requests/x.json"}
    with Stubber(sm_runtime) as rt, Stubber(s3) as s3_stub:
        rt.add_response("invoke_endpoint_async", {
            "InferenceId": "x", "OutputLocation": "s3://bkt/out/x.out", "FailureLocation": "s3://bkt/fail/x.out"}, {
            "EndpointName": ENDPOINT, "ContentType": "application/json", "Accept": "application/json",
            "InferenceId": "x", "InvocationTimeoutSeconds": invocation, "RequestTTLSeconds": ttl, **where})
        s3_stub.add_response("get_object", {"Body": StreamingBody(_bytes(b'{"status": "succeeded"}'), 23)},
                             {"Bucket": "bkt", "Key": "out/x.out"})
        result = runtime.invoke_async(sm_runtime, s3, store, "s3://bkt/pre", ENDPOINT,
                                      request, lambda e: None, timeout=timeout)
        rt.assert_no_pending_responses()
    assert result == {"status": "succeeded"}


# async: a request goes inline when it fits and the client's model has `Body`, else through the store

def _async_call(tmp_path, request: dict, sm_runtime=None) -> tuple[dict, list[str]]:
    """The InvokeEndpointAsync parameters sent for `request`, and the store's keys after it (botocore's Stubber
    holds the parameters to the client's service model: a `Body` over its limit is refused there too)."""
    from comfyui_sagemaker.local.folder_store import FolderStore

    sm_runtime = sm_runtime or boto3.client("sagemaker-runtime", region_name="us-east-1")
    s3 = boto3.client("s3", region_name="us-east-1")
    store = FolderStore(tmp_path / "store")
    sent: list[dict] = []
    with Stubber(sm_runtime) as rt:
        rt.add_response("invoke_endpoint_async", {"InferenceId": "x", "OutputLocation": "s3://bkt/out/x.out"})
        sm_runtime.meta.events.register("provide-client-params.sagemaker-runtime.InvokeEndpointAsync",
                                        lambda params, **_: sent.append(dict(params)))
        runtime.invoke_async(sm_runtime, s3, store, "s3://bkt/pre", ENDPOINT, request, lambda e: None,
                             follow=lambda *args: {"status": "succeeded"})
        rt.assert_no_pending_responses()
    return sent[0], store.list("async/")


def test_a_small_async_request_goes_inline_and_writes_nothing_to_the_store(aws_env, tmp_path):
    sm_runtime = boto3.client("sagemaker-runtime", region_name="us-east-1")
    if not runtime.takes_inline(sm_runtime):  # the lowest boto3 allowed: every request goes through S3
        params, keys = _async_call(tmp_path, {"execution_id": "x", "prompt": {}}, sm_runtime)
        assert "Body" not in params and params["InputLocation"] == "s3://bkt/pre/async/requests/x.json"
        assert keys == ["async/requests/x.json"]
        return
    request = {"execution_id": "x", "prompt": {"1": {"inputs": {"text": "a" * 1000}}}}
    params, keys = _async_call(tmp_path, request, sm_runtime)
    assert params["Body"] == json.dumps(request).encode() and "InputLocation" not in params
    assert keys == []


def test_an_async_request_over_the_inline_limit_goes_through_the_store(aws_env, tmp_path):
    limit = botocore.session.get_session().get_service_model("sagemaker-runtime") \
        .operation_model("InvokeEndpointAsync").input_shape.members
    if "Body" in limit:  # the limit is the model's own
        assert limit["Body"].metadata["max"] == runtime.INLINE_LIMIT
    request = {"execution_id": "x", "prompt": {}, "pad": ""}
    request["pad"] = "a" * (runtime.INLINE_LIMIT + 1 - len(json.dumps(request)))
    assert len(json.dumps(request).encode()) == runtime.INLINE_LIMIT + 1
    params, keys = _async_call(tmp_path, request)
    assert "Body" not in params and params["InputLocation"] == "s3://bkt/pre/async/requests/x.json"
    assert keys == ["async/requests/x.json"]
    request["pad"] = request["pad"][1:]  # at the limit: inline where the client can
    params, _ = _async_call(tmp_path / "at", request)
    assert ("Body" in params) == runtime.takes_inline(boto3.client("sagemaker-runtime", region_name="us-east-1"))


def _bytes(data: bytes):
    import io

    return io.BytesIO(data)


# the emulator speaks AWS's texts (through a real boto3 client on the wire)

class _Worker(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.server.mode == "fail":
            body = b'{"error": "bad prompt"}'
            self.send_response(400)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        self.wfile.write(ndjson({"type": "progress", "data": {}}))
        self.wfile.flush()
        self.server.release.wait(120)  # hold the stream open past the emulator's limit

    def log_message(self, *args):
        pass


class _FakeSageMaker:
    class meta:  # noqa: N801 (boto3's attribute)
        region_name = "us-east-1"

    def describe_endpoint(self, EndpointName):  # noqa: N803 (boto3's argument name)
        if EndpointName != ENDPOINT:
            raise KeyError(EndpointName)
        return {"EndpointConfigName": "c"}


@pytest.fixture
def emulated(aws_env):
    worker = ThreadingHTTPServer(("127.0.0.1", 0), _Worker)
    worker.mode, worker.release = "stream", threading.Event()
    threading.Thread(target=worker.serve_forever, daemon=True).start()
    emulator = RuntimeEmulator(_FakeSageMaker(), None, realtime_limit=0.5).start()
    emulator.workers[ENDPOINT] = f"http://127.0.0.1:{worker.server_address[1]}"
    client = boto3.client("sagemaker-runtime", region_name="us-east-1", endpoint_url=emulator.url)
    yield client, worker
    worker.release.set()
    emulator.stop()
    worker.shutdown()
    worker.server_close()


def test_emulator_unknown_endpoint_is_awss_text(emulated):
    client, _ = emulated
    with pytest.raises(client.exceptions.ValidationError) as info:
        client.invoke_endpoint_with_response_stream(EndpointName="nope", Body=b"{}")
    assert info.value.response["Error"]["Message"] == "Endpoint nope of account 123456789012 not found."


def test_emulator_model_error_is_awss_format(emulated):
    client, worker = emulated
    worker.mode = "fail"
    with pytest.raises(client.exceptions.ModelError) as info:
        client.invoke_endpoint_with_response_stream(EndpointName=ENDPOINT, Body=b"{}")
    r = info.value.response
    assert (r["OriginalStatusCode"], r["OriginalMessage"]) == (400, '{"error": "bad prompt"}')
    assert r["Error"]["Message"] == (f'Received client error (400) from primary with message '
                                     f'"{{"error": "bad prompt"}}". See {LOGS} for more information.')


def test_emulator_stream_over_its_limit_sends_the_model_stream_error(emulated):
    client, _ = emulated
    body = client.invoke_endpoint_with_response_stream(EndpointName=ENDPOINT, Body=b"{}")["Body"]
    with pytest.raises(EventStreamError) as info:
        for _ in body:
            pass
    assert info.value.response["Error"] == {"Code": "ModelStreamError", "Message": STREAM_TIMEOUT_MESSAGE}
