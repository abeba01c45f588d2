"""Async results by notification: SageMaker publishes each async run's end to an SNS topic, and this process
long-polls an SQS queue of its own subscribed to it, only while it waits for async runs.

SageMaker Developer Guide, "Check prediction results" (asynchronous inference): with
AsyncInferenceConfig.OutputConfig.NotificationConfig {SuccessTopic, ErrorTopic} SageMaker publishes a JSON
message per request, `{"invocationStatus": "Completed" | "Failed", "inferenceId": ..., "requestParameters":
{"endpointName", "inputLocation", ...}, "responseParameters": {"outputLocation" | "failureLocation", ...},
"failureReason": ...}`; the endpoint's execution role needs sns:Publish on the topics.

One queue per ComfyUI (and per gateway replica), not one per store: SQS gives each message to one receiver, so
ComfyUIs sharing a queue would take each other's notices, and handing one back (visibility 0) makes the others
receive it again at once, in a loop that bills every turn. The topic fans the notices out to every process's
queue instead, each subscription filtered to the runs of its own process (execution ids end with the instance
id of the process that made them: core/executions.py new_id), so no queue holds another's notices. The queue
is made at the process's first async run (named after the store and the process's stable instance id, so a
process that crashed makes the same one again instead of another) and deleted when the process's services
close. An SQS queue bills per request, not for existing: nothing asks it anything while
no run waits.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from typing import Any

from .errors import error_code, error_message

log = logging.getLogger("comfyui_sagemaker")
WAIT_S = 20  # ReceiveMessage's longest long poll (SQS Developer Guide, "Amazon SQS short and long polling")
TOPIC_ARN = re.compile(r"arn:aws[a-z\-]*:sns:[a-z0-9\-]+:[0-9]{12}:[a-zA-Z0-9_.-]+")  # SnsTopicArn's pattern
RETENTION_S = 3600  # a notice nobody received within the hour is found by the watch's own look instead
FAILED_BACKOFF_S = (1.0, 60.0)  # a queue that cannot be read: retried from 1 s, doubling to a minute


def notification_config(topic_arn: str) -> dict[str, str]:
    """OutputConfig.NotificationConfig: one topic for both ends (one subscription per process)."""
    return {"SuccessTopic": topic_arn, "ErrorTopic": topic_arn}


def queue_name(store_digest: str, instance: str) -> str:
    """cs-<store>-<instance>: the policies grant queues named cs-* only; SQS allows 80 characters."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"cs-{store_digest}-{instance}")[:80]


def queue_arn(topic_arn: str, name: str) -> str:
    """The queue is made in the topic's account and region (SNS delivers to SQS within them)."""
    partition, region, account = topic_arn.split(":")[1], topic_arn.split(":")[3], topic_arn.split(":")[4]
    return f"arn:{partition}:sqs:{region}:{account}:{name}"


def queue_policy(queue: str, topic_arn: str) -> str:
    """Only the topic may send to the queue (SNS Developer Guide, "Fanout to Amazon SQS queues": the queue
    policy allows sns.amazonaws.com sqs:SendMessage with aws:SourceArn the topic)."""
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "TheAsyncResultsTopicOnly", "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"},
        "Action": "sqs:SendMessage", "Resource": queue, "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}}}]})


def inference_id(body: str) -> str | None:
    """The inferenceId a notice names; None for what is not one. A subscription without raw delivery wraps
    the message in SNS's envelope ({"Type": "Notification", "Message": "<the message>"}): read either."""
    try:
        message = json.loads(body)
        if isinstance(message, dict) and message.get("Type") == "Notification":
            message = json.loads(message.get("Message") or "")
    except (ValueError, TypeError):
        return None
    found = message.get("inferenceId") if isinstance(message, dict) else None
    return found if isinstance(found, str) and found else None


class Notices:
    """This process's queue on the async results topic. `want(id)` before a run is invoked and `done(id)`
    when its watcher stops; the queue is long-polled in a thread of its own while a wanted run has had no
    notice, and `on_notice(inference id)` is told of each notice (the watch looks at that run at once).
    `sqs`, `sns`: boto3 clients."""

    def __init__(self, sqs: Any, sns: Any, topic_arn: str, name: str, instance: str,
                 on_notice: Callable[[str], None]):
        self.sqs, self.sns, self.topic_arn, self.name, self.instance = sqs, sns, topic_arn, name, instance
        self._on_notice = on_notice
        self._lock = threading.Lock()
        self._making = threading.Lock()  # the queue is made, or deleted, by one thread at a time
        self._waiting: set[str] = set()  # wanted and not yet noticed
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._url: str | None = None
        self._subscription: str | None = None

    def want(self, inference_id: str) -> None:
        with self._lock:
            if self._closed.is_set():
                return
            self._waiting.add(inference_id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._poll, daemon=True, name="sagemaker-async-notices")
                self._thread.start()

    def done(self, inference_id: str) -> None:
        with self._lock:
            self._waiting.discard(inference_id)

    def ready(self) -> bool:
        """Whether the queue is there to receive notices (made now if need be): asked before a run is invoked, so
        even the first run's notice has a queue to land in. False (logged) when it cannot be made: polling."""
        try:
            self._queue()
            return True
        except Exception as err:
            log.warning("comfyui-sagemaker: async results are polled for: the queue %s cannot be made (%s)",
                        self.name, error_message(err))
            return False

    def _queue(self) -> str:
        """The queue, made and subscribed at the first run: CreateQueue answers the same URL for a queue of that
        name and attributes, and Subscribe the same subscription, so a second process life reuses both."""
        with self._making:
            return self._make()

    def _make(self) -> str:
        if self._closed.is_set():
            raise RuntimeError("the async results queue is closed")
        if self._url is None:
            arn = queue_arn(self.topic_arn, self.name)
            self._url = self.sqs.create_queue(QueueName=self.name, Attributes={
                "Policy": queue_policy(arn, self.topic_arn), "MessageRetentionPeriod": str(RETENTION_S),
                "ReceiveMessageWaitTimeSeconds": str(WAIT_S)})["QueueUrl"]
            # Raw delivery: the message as SageMaker wrote it, not in SNS's envelope. Only this process's runs:
            # SNS Developer Guide, "Amazon SNS message filtering" (FilterPolicyScope MessageBody; suffix matching).
            self._subscription = self.sns.subscribe(
                TopicArn=self.topic_arn, Protocol="sqs", Endpoint=arn, ReturnSubscriptionArn=True,
                Attributes={"RawMessageDelivery": "true", "FilterPolicyScope": "MessageBody",
                            "FilterPolicy": json.dumps({"inferenceId": [{"suffix": f"-{self.instance}"}]})},
            )["SubscriptionArn"]
        return self._url

    def _poll(self) -> None:
        backoff = FAILED_BACKOFF_S[0]
        while not self._closed.is_set():
            with self._lock:
                if not self._waiting:  # every run waited on had its notice, or stopped waiting: no more polls
                    self._thread = None
                    return
            try:
                url = self._queue()
                messages = self.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=WAIT_S,
                                                    MaxNumberOfMessages=10).get("Messages", [])
                backoff = FAILED_BACKOFF_S[0]
            except Exception as err:  # the watch's own looks still find every result
                if self._closed.is_set():  # the queue was deleted under the long poll
                    break
                log.warning("comfyui-sagemaker: cannot read the async results queue %s (%s: %s); retrying in %.0f s",
                            self.name, error_code(err) or type(err).__name__, error_message(err), backoff)
                if self._closed.wait(backoff):
                    break
                backoff = min(backoff * 2, FAILED_BACKOFF_S[1])
                continue
            for message in messages:
                self._handle(url, message)
        with self._lock:
            self._thread = None

    def _handle(self, url: str, message: dict) -> None:
        found = inference_id(message.get("Body", ""))
        try:  # every notice goes: the topic gave each process's queue its own copy
            self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        except Exception as err:  # it comes back after its visibility timeout and is noticed again: harmless
            log.warning("comfyui-sagemaker: cannot delete a notice from %s: %s", self.name, error_message(err))
        if found is None:
            return
        with self._lock:
            self._waiting.discard(found)
        self._on_notice(found)

    def close(self) -> None:
        """No more polls; the queue is deleted. Not waited for: a long poll in flight ends with the deletion.
        The subscription stays: it costs nothing, its filter lets through only this process's runs (none while
        it is gone), and the next life's Subscribe answers the same one for the queue made again by name.
        (sns:Unsubscribe cannot be scoped to a topic in IAM: it would be granted on every subscription.)"""
        self._closed.set()
        with self._lock:
            self._waiting.clear()
        with self._making:
            if self._url:
                try:
                    self.sqs.delete_queue(QueueUrl=self._url)
                except Exception as err:  # an empty queue bills nothing; the next life of this process reuses it
                    log.warning("comfyui-sagemaker: cannot delete the async results queue %s: %s", self.name,
                                error_message(err))
            self._url = None
