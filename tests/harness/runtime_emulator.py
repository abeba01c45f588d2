"""A SageMaker runtime emulator that speaks the real wire protocol and forwards to a real worker.

moto accepts invocations of endpoints that do not exist and puts async results
in a random bucket, so this stands in for `runtime.sagemaker.<region>.amazonaws.com`
(boto3 reaches it through AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME):
- POST /endpoints/{name}/invocations: InvokeEndpoint;
- POST /endpoints/{name}/invocations-response-stream: InvokeEndpointWithResponseStream,
  the worker's bytes framed as `application/vnd.amazon.eventstream` PayloadPart events;
- POST /endpoints/{name}/async-invocations: InvokeEndpointAsync, 202 with the
  output and failure locations taken from the endpoint config on moto, the input
  inline (Body, up to 128,000 bytes) or read from moto's S3 (InputLocation; exactly one
  of them), the result written to moto's S3; with the config's NotificationConfig, the run's end
  published to its SNS topic on moto, the message as SageMaker documents it (Developer Guide, "Check
  prediction results": invocationStatus, inferenceId, requestParameters, responseParameters).
Errors have AWS's shapes and texts: `x-amzn-ErrorType` plus a JSON body with the
modeled fields. The texts are the ones AWS's users quote from real endpoints
(aws/amazon-sagemaker-examples issues #293, #559; aws/sagemaker-python-sdk #1119;
aws/sagemaker-huggingface-inference-toolkit #122; a re:Post question on
InvokeEndpointWithResponseStream), the error codes those of the API reference:
- ValidationError 400 "Endpoint {name} of account {account} not found.";
- ModelError 424 for a container that answers an error: "Received client|server error
  ({status}) from primary with message "{body}". See {CloudWatch link} in account
  {account} for more information.", with OriginalStatusCode / OriginalMessage / LogStreamArn;
- ModelError 424, original status 0, "Your invocation timed out while waiting for a response
  from container primary. ..." when the container sends nothing within the time limit;
- a ModelStreamError exception frame, ErrorCode ModelInvocationTimeExceeded, "Your model
  primary did not complete sending the inference response in the allotted time." when a
  stream runs over the limit.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import struct
import threading
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from comfyui_sagemaker.aws.runtime import INLINE_LIMIT

from .comfyui import free_port

ACCOUNT = "123456789012"
CONTAINER_TIMEOUT_MESSAGE = ("Your invocation timed out while waiting for a response from container primary. Review "
                             "the latency metrics for each container in Amazon CloudWatch, resolve the issue, and try "
                             "again.")
STREAM_TIMEOUT_MESSAGE = "Your model primary did not complete sending the inference response in the allotted time."


def event_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One message of AWS's event stream encoding (string headers only)."""
    encoded = b""
    for name, value in headers.items():
        n, v = name.encode(), value.encode()
        encoded += struct.pack("B", len(n)) + n + b"\x07" + struct.pack(">H", len(v)) + v
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    prelude += struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + encoded + payload
    return message + struct.pack(">I", binascii.crc32(message) & 0xFFFFFFFF)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def payload_part(data: bytes) -> bytes:
    return event_message({":event-type": "PayloadPart", ":content-type": "application/octet-stream",
                          ":message-type": "event"}, data)


def aws_error(status: int, kind: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"Message": message, **extra}, status=status, headers={"x-amzn-ErrorType": kind})


def model_error(endpoint: str, region: str, status: int, original: str) -> web.Response:
    """What SageMaker answers when the container answered `status` (0: nothing in time)."""
    group = f"/aws/sagemaker/Endpoints/{endpoint}"
    logs = (f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logEventViewer:group={group}")
    kind = "client" if 400 <= status < 500 else "server"
    return aws_error(424, "ModelError", f'Received {kind} error ({status}) from primary with message "{original}". '
                     f"See {logs} in account {ACCOUNT} for more information.", OriginalStatusCode=status,
                     OriginalMessage=original, LogStreamArn=f"arn:aws:logs:{region}:{ACCOUNT}:log-group:{group}")


def async_notice(region: str, name: str, location: str, request: dict, target: str, status: int,
                 data: bytes = b"") -> dict:
    """SageMaker's notification of an async run's end (Developer Guide, "Check prediction results"): `request`
    holds the run's inferenceId, contentType and receivedTime; `target` is where its result or failure is."""
    message: dict[str, Any] = {
        "awsRegion": region, "eventTime": _now(), "receivedTime": request.get("receivedTime") or _now(),
        "invocationStatus": "Completed" if status == 200 else "Failed",
        "requestParameters": {"contentType": request.get("contentType", "application/json"), "endpointName": name,
                              "inputLocation": location},
        "responseParameters": {"contentType": "application/json",
                               "outputLocation" if status == 200 else "failureLocation": target},
        "inferenceId": request["inferenceId"], "eventVersion": "1.0", "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult"}
    if status != 200:
        message["failureReason"] = (f"ClientError: Received server error ({status}) from primary with message "
                                    f"\"{data.decode(errors='replace')[:200]}\".")
    return message


class RuntimeEmulator:
    def __init__(self, sagemaker: Any, s3: Any, realtime_limit: float = 60.0, sns: Any = None):
        self.sagemaker = sagemaker  # a boto3 client on moto: which endpoints exist, their async config
        self.s3 = s3
        self.sns = sns  # publishes the async notices (None: a client made like `sagemaker`, on the same moto)
        self.realtime_limit = realtime_limit
        self.workers: dict[str, str] = {}  # endpoint name -> worker URL
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.calls: list[tuple[str, str]] = []  # (operation, endpoint)
        self.inline: list[bool] = []  # per accepted async request: whether it came inline (Body) or from S3
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._started = threading.Event()

    def _endpoint(self, name: str) -> tuple[dict | None, web.Response | None]:
        try:
            d = self.sagemaker.describe_endpoint(EndpointName=name)
        except Exception:
            d = None
        if d is None or name not in self.workers:
            return None, aws_error(400, "ValidationError", f"Endpoint {name} of account {ACCOUNT} not found.")
        return d, None

    async def _forward(self, name: str, body: bytes, accept: str) -> aiohttp.ClientResponse:
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        response = await session.post(self.workers[name] + "/invocations", data=body,
                                      headers={"Content-Type": "application/json", "Accept": accept})
        response._emulator_session = session  # closed with the response
        return response

    @staticmethod
    async def _close(response: aiohttp.ClientResponse) -> None:
        response.release()
        await response._emulator_session.close()

    async def invoke(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.calls.append(("InvokeEndpoint", name))
        _, error = self._endpoint(name)
        if error:
            return error
        body = await request.read()
        try:
            response = await asyncio.wait_for(self._forward(name, body, request.headers.get("Accept", "")),
                                              self.realtime_limit)
            data = await asyncio.wait_for(response.read(), self.realtime_limit)
        except asyncio.TimeoutError:
            return self._timed_out(name)
        await self._close(response)
        if response.status != 200:
            return self._model_error(name, response.status, data.decode(errors="replace"))
        return web.Response(body=data, headers={"Content-Type": response.headers.get("Content-Type", ""),
                                                "x-Amzn-Invoked-Production-Variant": "AllTraffic"})

    def _model_error(self, name: str, status: int, original: str) -> web.Response:
        return model_error(name, getattr(getattr(self.sagemaker, "meta", None), "region_name", None) or "us-east-1",
                           status, original)

    def _timed_out(self, name: str) -> web.Response:
        return self._model_error(name, 0, CONTAINER_TIMEOUT_MESSAGE)

    async def invoke_stream(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.calls.append(("InvokeEndpointWithResponseStream", name))
        _, error = self._endpoint(name)
        if error:
            return error
        body = await request.read()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.realtime_limit
        try:
            response = await asyncio.wait_for(
                self._forward(name, body, request.headers.get("X-Amzn-SageMaker-Accept", "")), self.realtime_limit)
        except asyncio.TimeoutError:
            return self._timed_out(name)
        if response.status != 200:
            data = await response.read()
            await self._close(response)
            return self._model_error(name, response.status, data.decode(errors="replace"))
        out = web.StreamResponse(headers={"Content-Type": "application/vnd.amazon.eventstream",
                                          "x-Amzn-Invoked-Production-Variant": "AllTraffic",
                                          "X-Amzn-SageMaker-Content-Type": "application/x-ndjson"})
        await out.prepare(request)
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise asyncio.TimeoutError
                chunk = await asyncio.wait_for(response.content.readany(), remaining)
                if not chunk:
                    break
                await out.write(payload_part(chunk))
        except asyncio.TimeoutError:
            await out.write(event_message({":exception-type": "ModelStreamError",
                                           ":content-type": "application/json", ":message-type": "exception"},
                                          json.dumps({"Message": STREAM_TIMEOUT_MESSAGE,
                                                      "ErrorCode": "ModelInvocationTimeExceeded"}).encode()))
        await self._close(response)
        await out.write_eof()
        return out

    async def invoke_async(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.calls.append(("InvokeEndpointAsync", name))
        d, error = self._endpoint(name)
        if error:
            return error
        config = self.sagemaker.describe_endpoint_config(EndpointConfigName=d["EndpointConfigName"])
        async_config = config.get("AsyncInferenceConfig")
        if not async_config:
            return aws_error(400, "ValidationError", f"Endpoint {name} is not an async endpoint.")
        location = request.headers.get("X-Amzn-SageMaker-InputLocation", "")
        inline = await request.read()
        if bool(location) == bool(inline):  # exactly one of them (Developer Guide, "Invoke an Asynchronous Endpoint")
            return aws_error(400, "ValidationError", "Provide the request either inline (Body) or in S3 "
                             "(InputLocation), not both and not neither.")
        if len(inline) > INLINE_LIMIT:
            return aws_error(400, "ValidationError", f"The inline Body is {len(inline)} bytes; the limit is "
                             f"{INLINE_LIMIT}: use InputLocation.")
        self.inline.append(bool(inline))
        inference_id = request.headers.get("X-Amzn-SageMaker-Inference-Id") or "emulated"
        outputs = async_config["OutputConfig"]
        output = f"{outputs['S3OutputPath'].rstrip('/')}/{inference_id}.out"
        failure = f"{outputs.get('S3FailurePath', outputs['S3OutputPath']).rstrip('/')}/{inference_id}-error.out"
        notices = outputs.get("NotificationConfig") or {}
        asyncio.get_running_loop().create_task(self._run_async(name, location or inline, output, failure, {
            "inferenceId": inference_id, "notices": notices,
            "contentType": request.headers.get("X-Amzn-SageMaker-Content-Type", "application/octet-stream"),
            "receivedTime": _now()}))
        return web.json_response({"InferenceId": inference_id}, status=202,
                                 headers={"X-Amzn-SageMaker-OutputLocation": output,
                                          "X-Amzn-SageMaker-FailureLocation": failure})

    async def _run_async(self, name: str, request_from: str | bytes, output: str, failure: str,
                         request: dict) -> None:
        """`request_from`: the request's S3 location, or the request itself (inline)."""
        def s3_parts(uri: str) -> tuple[str, str]:
            p = urlsplit(uri)
            return p.netloc, p.path.lstrip("/")

        location = request_from if isinstance(request_from, str) else ""
        if isinstance(request_from, bytes):
            body = request_from
        else:
            bucket, key = s3_parts(request_from)
            body = await asyncio.to_thread(lambda: self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        response = await self._forward(name, body, "application/json")
        data = await response.read()
        await self._close(response)
        target = output if response.status == 200 else failure
        if response.status != 200:
            data = json.dumps({"OriginalStatusCode": response.status,
                               "OriginalMessage": data.decode(errors="replace")}).encode()
        out_bucket, out_key = s3_parts(target)
        await asyncio.to_thread(self.s3.put_object, Bucket=out_bucket, Key=out_key, Body=data)
        topic = request["notices"].get("SuccessTopic" if response.status == 200 else "ErrorTopic")
        if topic:
            region = getattr(getattr(self.sagemaker, "meta", None), "region_name", None) or "us-east-1"
            message = async_notice(region, name, location, request, target, response.status, data)
            await asyncio.to_thread(self._sns().publish, TopicArn=topic, Message=json.dumps(message))

    def _sns(self) -> Any:
        if self.sns is None:
            import boto3

            meta = self.sagemaker.meta
            self.sns = boto3.client("sns", endpoint_url=meta.endpoint_url, region_name=meta.region_name,
                                    aws_access_key_id="testing", aws_secret_access_key="testing")
        return self.sns

    def start(self) -> RuntimeEmulator:
        def run() -> None:
            self._loop = asyncio.new_event_loop()
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_post("/endpoints/{name}/invocations", self.invoke)
            app.router.add_post("/endpoints/{name}/invocations-response-stream", self.invoke_stream)
            app.router.add_post("/endpoints/{name}/async-invocations", self.invoke_async)
            self._runner = web.AppRunner(app)
            self._loop.run_until_complete(self._runner.setup())
            self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
            self._started.set()
            self._loop.run_forever()

        threading.Thread(target=run, daemon=True, name="runtime-emulator").start()
        if not self._started.wait(60):
            raise RuntimeError("the runtime emulator did not start within 60 s")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return

        async def shutdown() -> None:
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(60)
        self._loop.call_soon_threadsafe(self._loop.stop)
