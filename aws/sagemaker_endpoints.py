"""SageMaker endpoints: state read from AWS, never a shadow copy.

An environment's endpoint is found by name and by tag; its state, failure
reason, instance count and the version it serves come from DescribeEndpoint
at every look, so an endpoint deleted in the console is simply gone here too.

The life cycle follows the SageMaker API reference (aws/endpoint_states.py):
a deploy updates an InService endpoint in place (the old version serves until
the new one is up), recreates a Failed one (DeleteEndpoint is the only
operation SageMaker allows on it) or one switching between async and
real-time (SageMaker refuses that in place), and refuses while the endpoint
is busy. A monitor follows it to a settled state: an update SageMaker rolled
back comes back InService on the old config with a FailureReason, which is
reported as such (and the new version's model and config removed), never
taken for success. Autoscaling is set up once InService; if that fails the
endpoint carries a warning. Once a version serves, the models and configs of
older versions are removed but for the KEPT_VERSIONS newest (a rollback to one
of them is a single UpdateEndpoint). Delete removes everything made for it
once the endpoint is gone, never a config or model a live endpoint uses.

Stop deletes the SageMaker endpoint (billing stops) and keeps its EndpointConfig and Model; a record in
the store (`endpoints/<environment>/stopped.json`) says so and names the config, so the endpoint is
still listed, with the state `Stopped`: ours, not one of SageMaker's EndpointStatus values. Start creates
the endpoint again from that config and follows it as a deploy does.

The parts, each a module with one reason to change, make SageMakerEndpoints by inheritance: sagemaker_base
(settings, clients, kept views), sagemaker_views (get, list), sagemaker_requests (what a version creates),
sagemaker_deploys (deploy, rollback, the monitor), sagemaker_stop_start (stop, start, delete),
sagemaker_invocations (runs). The names tests and other modules import from here stay importable from here.
"""

from __future__ import annotations

from .sagemaker_base import (
    GONE_TIMEOUT_S,
    INVOCATION_TIMEOUT_S,
    KEPT_VERSIONS,
    STARTUP_HEALTH_CHECK_S,
    VIEW_KEPT_S,
    version_of,
)
from .sagemaker_invocations import SageMakerInvocations
from .sagemaker_stop_start import SageMakerStopStart
from .sagemaker_views import Stopped, worker_summary

__all__ = ["GONE_TIMEOUT_S", "INVOCATION_TIMEOUT_S", "KEPT_VERSIONS", "STARTUP_HEALTH_CHECK_S", "VIEW_KEPT_S",
           "SageMakerEndpoints", "Stopped", "version_of", "worker_summary"]


class SageMakerEndpoints(SageMakerStopStart, SageMakerInvocations):
    kind = "sagemaker"
