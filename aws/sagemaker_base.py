"""What every part of SageMakerEndpoints (aws/sagemaker_endpoints.py) stands on: its settings, its clients,
the endpoint views runs keep (VIEW_KEPT_S), and the SageMaker calls all parts make (DescribeEndpoint,
CreateEndpoint, waiting for an endpoint to be gone)."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from ..core import instance_allowlist
from ..core.endpoint_config import EndpointConfigInvalid
from ..core.endpoints import READY_STATES, Endpoints
from ..core.records import EndpointConfig, EndpointView, Manifest
from . import autoscaling, naming
from .clients import client
from .errors import error_code as _code
from .errors import translate
from .sagemaker_proofs import SageMakerProofs

if TYPE_CHECKING:
    from .sagemaker_endpoints import SageMakerEndpoints

log = logging.getLogger("comfyui_sagemaker")
STARTUP_HEALTH_CHECK_S = 3600  # materialising an environment (models by digest) can take a while
GONE_TIMEOUT_S = 1800  # a DeleteEndpoint usually ends within minutes
INVOCATION_TIMEOUT_S = {"realtime": 60, "async": 3600}  # SageMaker's limits per mode
# Versions whose model and endpoint config stay in SageMaker besides the serving one, the newest first, so a
# rollback to them is one UpdateEndpoint. Models and configs cost nothing while no endpoint uses them.
KEPT_VERSIONS = 2
# How long a run trusts the endpoint's view read for an earlier run of this process (Endpoints.known): beyond it,
# a run describes the endpoint again (another ComfyUI may have stopped or updated it meanwhile).
VIEW_KEPT_S = 60.0


def _not_found(err: Exception) -> bool:
    return _code(err) == "ValidationException" and "Could not find" in str(err)


def version_of(config_name: str | None) -> int | None:
    m = re.search(r"-v(\d+)$", config_name or "")
    return int(m.group(1)) if m else None


def _endpoint_config(manifest: Manifest) -> EndpointConfig:
    """The manifest's endpoint config: a SageMaker deploy is asked only of one that has one."""
    cfg = manifest.get("endpoint")
    if cfg is None or cfg["kind"] != "sagemaker":
        raise EndpointConfigInvalid(f"version {manifest['version']} of environment {manifest['name']} has no "
                                    "SageMaker endpoint config")
    return cfg


class SageMakerBase(Endpoints):
    """The settings, clients and kept views of SageMakerEndpoints; each part of it builds on this."""

    def __init__(self, store_uri: str, role_arn: str, image_uri: str, region: str = "",
                 on_change: Callable[[EndpointView], None] | None = None, clients: dict[str, Any] | None = None,
                 poll_interval: float = 15.0, store: Any = None, sse: str = "", kms_key_id: str = "",
                 log_retention_days: int | None = None,
                 max_instances: int | None = None,
                 allowed_instance_types: tuple[str, ...] = instance_allowlist.DEFAULT,
                 prover: Callable[[], Any] = lambda: None,
                 notification_topic: str = "", instance: str = ""):
        self.store_uri = store_uri
        # An update's proofs run before it (aws/sagemaker_proofs.py); they use every part of SageMakerEndpoints,
        # the only class of these ever made.
        self.proofs = SageMakerProofs(cast("SageMakerEndpoints", self), prover)
        # The configuration's limits, held here too: every path that creates an endpoint config or an endpoint
        # (deploy, a publish's deploy, start) passes through this provider, whatever face asked.
        self.max_instances = max_instances
        self.allowed_instance_types = allowed_instance_types
        self.role_arn = role_arn
        self.image_uri = image_uri
        self.region = region
        # What runs need of each endpoint (its view while it takes invocations, its config), kept per endpoint
        # name and dropped on any change this process makes or sees (`known`).
        self._views: dict[str, tuple[float, EndpointView]] = {}
        self._endpoint_configs: dict[str, dict] = {}
        self.on_change = on_change or (lambda endpoint: None)
        self._clients = clients or {}
        self._configs: dict[tuple[str, int], EndpointConfig | None] = {}  # (environment, version) -> its config
        self.poll_interval = poll_interval
        self.store = store  # the S3 store: async requests, cancel markers, warnings
        self.sse = sse  # the store's server-side encryption: the worker's writes and async results use it too
        self.kms_key_id = kms_key_id
        # Days an endpoint's log is kept (aws/endpoint_logs.py); None leaves the group to SageMaker (kept for good).
        self.log_retention_days = log_retention_days
        # Async runs' ends notified on this SNS topic, received by this process (`instance`): aws/notifications.py.
        self.notification_topic = notification_topic
        self.instance = instance

    @property
    def on_change(self) -> Callable[[EndpointView], None]:
        """Told of each change of an endpoint (deploy, stop, start, delete, a proof's end): what runs kept of the
        endpoints is dropped first (whoever wraps it later)."""
        return self._told

    @on_change.setter
    def on_change(self, told: Callable[[EndpointView], None]) -> None:
        def changed(view: EndpointView) -> None:
            self.forget_views()
            told(view)

        self._told = changed

    def forget_views(self, endpoint: str | None = None) -> None:
        """Drop what runs kept of one endpoint (by SageMaker name), or of all: the next run describes it again."""
        for name in [endpoint] if endpoint else list(self._views):
            kept = self._views.pop(name, None)
            if kept is not None:
                self._endpoint_configs.pop(kept[1].get("endpoint_config") or "", None)

    def forget(self) -> None:
        self.forget_views()

    def known(self, name: str) -> EndpointView:
        """The endpoint's view for a run, kept for VIEW_KEPT_S s once read ready (a run's DescribeEndpoint, its
        warning, worker report and proofs do not depend on the run): shared by every run of this process,
        checked against SageMaker by the async watch's DescribeEndpoint while runs wait (`watch`), and dropped on
        a change here (`on_change`) or elsewhere (`forget`: another ComfyUI's notice), or an invocation that fails
        (`invoke`)."""
        kept = self._views.get(naming.endpoint_name(name, self.store_uri))
        if kept is not None and time.monotonic() - kept[0] < VIEW_KEPT_S:
            return kept[1]
        return self.get(name)

    def _keep(self, view: EndpointView) -> EndpointView:
        if view["state"] in READY_STATES:
            self._views[view["endpoint_name"]] = (time.monotonic(), view)
        else:
            self.forget_views(view["endpoint_name"])
        return view

    def aws_client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = client(service, self.region)
        return self._clients[service]

    @property
    def sm(self) -> Any:
        return self.aws_client("sagemaker")

    def create_endpoint(self, endpoint: str, config_name: str, env: str) -> None:
        """CreateEndpoint, its log group made first with a retention. A caller not allowed that (a designer
        policy older than the log retention) still deploys: its log is then SageMaker's, kept for good."""
        from botocore.exceptions import BotoCoreError, ClientError

        from .endpoint_logs import keep_logs

        if self.log_retention_days is not None:
            try:
                keep_logs(self.aws_client("logs"), endpoint, self.log_retention_days)
            except (ClientError, BotoCoreError) as err:
                log.warning("comfyui-sagemaker: endpoint %s's log group keeps its events for good: %s", endpoint,
                            translate(err, self.region).message)
        self.sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=config_name,
                                Tags=naming.tags(env, None, self.store_uri))

    @property
    def cloudwatch(self) -> Any:
        return self.aws_client("cloudwatch")

    def _scaling(self) -> autoscaling.Autoscaling:
        return autoscaling.Autoscaling(self.aws_client("application-autoscaling"), self.aws_client("cloudwatch"))

    def describe_endpoint(self, endpoint: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            return self.sm.describe_endpoint(EndpointName=endpoint)
        except ClientError as err:
            if _not_found(err):
                return None
            raise

    def wait_gone(self, endpoint: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.describe_endpoint(endpoint) is None:
                return True
            time.sleep(self.poll_interval)
        return False

    def when_settled(self, name: str, done: Callable[[], None]) -> None:
        self.proofs.when_settled(name, done)

    def in_background(self, fn: Callable[[], object], name: str) -> None:
        threading.Thread(target=fn, daemon=True, name=name).start()
