"""SageMakerEndpoints (aws/sagemaker_endpoints.py) with every client it may make behind botocore's Stubber:
each request is checked against the installed service model before the Stubber answers, a request nobody
queued fails the test, and a queued answer nobody asked for fails it at the end.

Every client the provider may make is given, so none is made (and cached for the process) outside the test.
The service-quotas Stubber answers only what a test queues (tests/harness/service_quotas.py); a deploy's
quota read with nothing queued meets the Stubber's own error, a BotoCoreError: the warning path."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.stub import Stubber
from comfyui_sagemaker.aws import naming
from comfyui_sagemaker.aws.sagemaker_endpoints import SageMakerEndpoints

REGION = "us-east-1"
STORE = "s3://team-bucket/comfy"
ROLE = "arn:aws:iam::123456789012:role/ComfySageMaker"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/comfyui-sagemaker-worker:0.1.0"
ENDPOINT = naming.endpoint_name("Portraits", STORE)
SERVICES = ("sagemaker", "application-autoscaling", "cloudwatch", "service-quotas")


@dataclass
class StubbedCloud:
    endpoints: SageMakerEndpoints
    clients: dict[str, Any]
    stubs: dict[str, Stubber]
    events: list[dict]  # the provider's on_change views, in order
    monitored: list[tuple]  # (manifest, endpoint, recreate): each deploy's follow-up, not run

    def assert_done(self) -> None:
        for stub in self.stubs.values():
            stub.assert_no_pending_responses()


@contextmanager
def stubbed_endpoints(services: tuple[str, ...] = SERVICES, *, role: str = ROLE, image: str = IMAGE,
                      monitor: bool = False, **options: Any) -> Iterator[StubbedCloud]:
    """The provider on Stubbed clients of `services`; `options` go to SageMakerEndpoints (store, limits, ...).
    Background work (a stop's follow-up) runs here and now; `monitor=False` records each deploy's follow-up
    in `monitored` instead of running it (the tests drive settle() themselves), True leaves it real."""
    clients = {s: boto3.client(s, region_name=REGION) for s in services}
    stubs = {s: Stubber(c) for s, c in clients.items()}
    for stub in stubs.values():
        stub.activate()
    events: list[dict] = []
    monitored: list[tuple] = []
    endpoints = SageMakerEndpoints(STORE, role, image, REGION, events.append, clients, poll_interval=0, **options)
    if not monitor:
        endpoints.monitor = lambda m, e, recreate=False: monitored.append((m, e, recreate))
    endpoints.in_background = lambda fn, name: fn()
    cloud = StubbedCloud(endpoints, clients, stubs, events, monitored)
    yield cloud
    cloud.assert_done()
