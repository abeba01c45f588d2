"""Async results by notification (aws/notifications.py): the deploy names the SNS topic in the async config, each
process long-polls a queue of its own subscribed to it while it waits for runs, and a notice wakes the run's
watcher at once. Shapes through botocore's Stubber (each request checked against the service model); the
path end to end on moto, where the runtime emulator publishes the notice as SageMaker documents it."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from botocore.stub import ANY, Stubber
from comfyui_sagemaker.aws import async_watch, notifications
from comfyui_sagemaker.aws.notifications import Notices
from harness.comfyui import free_port
from harness.runtime_emulator import RuntimeEmulator, async_notice
from harness.sagemaker_stub import ENDPOINT, IMAGE, ROLE, STORE, stubbed_endpoints
from harness.service_quotas import answering
from harness.waiting import wait_for

REGION = "us-east-1"
TOPIC = "arn:aws:sns:us-east-1:123456789012:comfy-AsyncResultsTopic-ABC"
INSTANCE = "abc123def456"
RUN = f"20261207T000000000000-deadbeef-{INSTANCE}"
QUEUE = notifications.queue_name("0123abcd", INSTANCE)
QUEUE_URL = f"https://sqs.us-east-1.amazonaws.com/123456789012/{QUEUE}"


def manifest(mode: str = "async") -> dict:
    return {"name": "Portraits", "version": 1, "custom_nodes": [], "models": [], "endpoint": {
        "kind": "sagemaker", "instance_type": "ml.g4dn.xlarge", "initial_count": 1, "mode": mode,
        "autoscaling": None}}


def test_an_async_config_names_the_topic_for_both_ends(aws_env):
    with stubbed_endpoints(("sagemaker",), notification_topic=TOPIC, instance=INSTANCE) as cloud:
        request = cloud.endpoints.endpoint_config_request(manifest())
        assert request["AsyncInferenceConfig"]["OutputConfig"]["NotificationConfig"] == {
            "SuccessTopic": TOPIC, "ErrorTopic": TOPIC}
        made = {"EndpointConfigArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/{ENDPOINT}-v1"}
        cloud.stubs["sagemaker"].add_response("create_endpoint_config", made, request)
        cloud.clients["sagemaker"].create_endpoint_config(**request)  # the Stubber checks it against the model
        assert "AsyncInferenceConfig" not in cloud.endpoints.endpoint_config_request(manifest("realtime"))
    with stubbed_endpoints(("sagemaker",)) as cloud:  # no topic configured: no notices, results polled for
        output = cloud.endpoints.endpoint_config_request(manifest())["AsyncInferenceConfig"]["OutputConfig"]
        assert "NotificationConfig" not in output


def test_notices_name_the_run_as_sagemaker_and_sns_write_them():
    notice = async_notice(REGION, ENDPOINT, f"{STORE}/async/requests/{RUN}.json", {"inferenceId": RUN},
                          f"{STORE}/async/outputs/{RUN}.out", 200)
    assert notice["invocationStatus"] == "Completed" and notice["responseParameters"]["outputLocation"]
    assert notifications.inference_id(json.dumps(notice)) == RUN
    # Without raw delivery SNS wraps it in its envelope.
    assert notifications.inference_id(json.dumps({"Type": "Notification", "Message": json.dumps(notice)})) == RUN
    for other in ("", "not json", "[]", json.dumps({"invocationStatus": "Completed"})):
        assert notifications.inference_id(other) is None


def test_the_queue_is_made_subscribed_long_polled_while_a_run_waits_and_deleted(aws_env):
    sqs, sns = boto3.client("sqs", region_name=REGION), boto3.client("sns", region_name=REGION)
    arn = f"arn:aws:sqs:us-east-1:123456789012:{QUEUE}"
    noticed: list[str] = []
    got = threading.Event()
    notices = Notices(sqs, sns, TOPIC, QUEUE, INSTANCE, lambda found: (noticed.append(found), got.set()))
    with Stubber(sqs) as q, Stubber(sns) as t:
        q.add_response("create_queue", {"QueueUrl": QUEUE_URL}, {"QueueName": QUEUE, "Attributes": {
            "Policy": notifications.queue_policy(arn, TOPIC), "MessageRetentionPeriod": "3600",
            "ReceiveMessageWaitTimeSeconds": "20"}})
        t.add_response("subscribe", {"SubscriptionArn": f"{TOPIC}:sub"}, {
            "TopicArn": TOPIC, "Protocol": "sqs", "Endpoint": arn, "ReturnSubscriptionArn": True,
            "Attributes": {"RawMessageDelivery": "true", "FilterPolicyScope": "MessageBody",
                           "FilterPolicy": json.dumps({"inferenceId": [{"suffix": f"-{INSTANCE}"}]})}})
        body = json.dumps(async_notice(REGION, ENDPOINT, "s3://x/in", {"inferenceId": RUN}, "s3://x/out", 200))
        q.add_response("receive_message", {"Messages": [{"MessageId": "m1", "ReceiptHandle": "r1", "Body": body}]},
                       {"QueueUrl": QUEUE_URL, "WaitTimeSeconds": 20, "MaxNumberOfMessages": 10})
        q.add_response("delete_message", {}, {"QueueUrl": QUEUE_URL, "ReceiptHandle": "r1"})
        q.add_response("delete_queue", {}, {"QueueUrl": QUEUE_URL})
        assert notices.ready()  # before the run is invoked: its notice has a queue to land in
        notices.want(RUN)
        assert got.wait(60) and noticed == [RUN]
        # Its notice came: no run waits, so no more long polls (the Stubber would refuse one).
        wait_for(lambda: notices._thread is None, 60, "the poll thread's end")
        notices.close()
        q.assert_no_pending_responses()
        t.assert_no_pending_responses()


def test_a_queue_that_cannot_be_made_leaves_the_runs_polled_for(aws_env, caplog):
    sqs, sns = boto3.client("sqs", region_name=REGION), boto3.client("sns", region_name=REGION)
    notices = Notices(sqs, sns, TOPIC, QUEUE, INSTANCE, lambda found: None)
    with Stubber(sqs) as q:
        q.add_client_error("create_queue", "AccessDenied", "not authorized to perform: sqs:CreateQueue",
                           expected_params={"QueueName": QUEUE, "Attributes": ANY})
        assert not notices.ready()
    assert "polled for" in caplog.text


class AnsweringWorker:
    """The container behind the emulated endpoint: answers each invocation with a result at once."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.dumps({"status": "succeeded", "outputs": {}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True, name="answering-worker").start()

    def stop(self) -> None:
        self.server.shutdown()


def test_a_notice_wakes_the_runs_watcher_on_moto(aws_env, monkeypatch):
    """Deployed with the topic, invoked through the runtime emulator, which publishes SageMaker's notice to SNS
    on moto once the result is written; SNS delivers it to this process's queue and the watcher looks at once.
    The watch's own look for the result is put off for good: only the notice can end the run."""
    from comfyui_sagemaker.aws.s3_store import S3Store
    from comfyui_sagemaker.aws.sagemaker_endpoints import SageMakerEndpoints
    from moto import mock_aws

    monkeypatch.setattr(async_watch, "NOTICE_FALLBACK_S", 1e9)
    nudged: list[str] = []
    nudge = async_watch.AsyncWatch.nudge
    monkeypatch.setattr(async_watch.AsyncWatch, "nudge", lambda self, found: (nudged.append(found), nudge(self, found)))
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="team-bucket")
        sns = boto3.client("sns", region_name=REGION)
        topic = sns.create_topic(Name="comfy-AsyncResultsTopic-ABC")["TopicArn"]
        assert topic == TOPIC
        store = S3Store("team-bucket", "comfy", s3_client=s3)
        emulator = RuntimeEmulator(boto3.client("sagemaker", region_name=REGION), s3, sns=sns).start()
        worker = AnsweringWorker()
        endpoints = SageMakerEndpoints(STORE, ROLE, IMAGE, REGION, poll_interval=0, store=store,
                                       clients={"service-quotas": answering("ml.g4dn.xlarge"),
                                                "sagemaker-runtime": boto3.client(
                                                    "sagemaker-runtime", region_name=REGION,
                                                    endpoint_url=emulator.url)},
                                       notification_topic=TOPIC, instance=INSTANCE)
        endpoints.monitor = lambda m, e, recreate=False: None
        try:
            endpoints.deploy(manifest())
            config = boto3.client("sagemaker", region_name=REGION).describe_endpoint_config(
                EndpointConfigName=f"{ENDPOINT}-v1")
            assert config["AsyncInferenceConfig"]["OutputConfig"]["NotificationConfig"]["SuccessTopic"] == TOPIC
            emulator.workers[ENDPOINT] = worker.url
            answers: list[dict] = []
            ran = threading.Thread(target=lambda: answers.append(endpoints.invoke(
                "Portraits", {"execution_id": RUN, "prompt": {}}, lambda event: None)), daemon=True)
            ran.start()
            ran.join(120)  # a bound on a hang, not a measure: without the notice the run would wait for good
            assert answers and answers[0]["status"] == "succeeded", "the notice did not end the run"
            assert nudged == [RUN]
            assert ("InvokeEndpointAsync", ENDPOINT) in emulator.calls
            queues = boto3.client("sqs", region_name=REGION).list_queues().get("QueueUrls", [])
            assert [q.rsplit("/", 1)[1] for q in queues] == [endpoints.notices.name]
        finally:
            endpoints.stop_listening()
            emulator.stop()
            worker.stop()
        # The process's services close: its queue goes with them, nothing is left to bill.
        assert boto3.client("sqs", region_name=REGION).list_queues().get("QueueUrls", []) == []


@pytest.mark.parametrize("topic", ["", TOPIC])
def test_the_setting_is_an_sns_topic_arn_or_empty(tmp_path, topic):
    from comfyui_sagemaker.core import config

    assert config.Config(notification_topic_arn=topic).notification_topic_arn == topic
    with pytest.raises(ValueError):
        config.Config(notification_topic_arn="arn:aws:sqs:us-east-1:123456789012:q")
