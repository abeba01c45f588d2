"""What a version asks SageMaker to create (CreateModel, CreateEndpointConfig and its variant), and the
checks made before anything is created: the configuration, the instance limits, the quotas."""

from __future__ import annotations

import logging
from typing import Any

from ..core import endpoint_config
from ..core.endpoint_config import EndpointConfigInvalid
from ..core.environments import manifest_key
from ..core.instance_families import gpu_count, inference_ami, refusal
from ..core.records import EndpointConfig, Manifest
from . import instance_pools, naming, notifications, quotas
from .errors import ROLE_ARN, AwsNotConfigured
from .errors import error_code as _code
from .sagemaker_base import INVOCATION_TIMEOUT_S, STARTUP_HEALTH_CHECK_S, SageMakerBase, _endpoint_config

log = logging.getLogger("comfyui_sagemaker")


class SageMakerRequests(SageMakerBase):
    """A version's model and endpoint config requests, and the checks before they are sent."""

    def check_configured(self) -> None:
        if not self.store_uri.startswith("s3://"):
            raise AwsNotConfigured("SageMaker endpoints read their environment from S3: set store to s3")
        if not ROLE_ARN.fullmatch(self.role_arn or ""):
            raise AwsNotConfigured(f"sagemaker_role_arn {self.role_arn!r} is not an IAM role ARN "
                                   "(arn:aws:iam::<account>:role/<name>)")
        if not self.image_uri:
            raise AwsNotConfigured("worker_image_uri is not set: build and push the worker image (README)")

    def model_request(self, manifest: Manifest) -> dict:
        env, version = manifest["name"], manifest["version"]
        name = naming.versioned_name(env, version, self.store_uri)
        manifest_uri = f"{self.store_uri}/{manifest_key(env, version)}"
        environment = {
            "SAGEMAKER_MANIFEST_URI": manifest_uri, "WORKER_MODELS": "eager",
            # SageMaker gives up on a real-time call after 60 s: the worker frees the GPU then too.
            "WORKER_INVOCATION_TIMEOUT": str(INVOCATION_TIMEOUT_S[_endpoint_config(manifest).get("mode", "async")]),
            # The extension cannot reach the container: its cold start report goes to the store.
            "WORKER_REPORT": "store"}
        if _endpoint_config(manifest).get("mode") == "realtime":
            environment["WORKER_DEADLINE_FROM_ARRIVAL"] = "1"  # its 60 s start when SageMaker sends the request
        if self.sse:
            environment["WORKER_S3_SSE"] = self.sse
            if self.sse == "aws:kms" and self.kms_key_id:
                environment["WORKER_S3_KMS_KEY_ID"] = self.kms_key_id
        return {
            "ModelName": name,
            "ExecutionRoleArn": self.role_arn,
            "PrimaryContainer": {"Image": self.image_uri, "Environment": environment},
            "Tags": naming.tags(env, version, self.store_uri),
        }

    def endpoint_config_request(self, manifest: Manifest) -> dict:
        env, version, cfg = manifest["name"], manifest["version"], _endpoint_config(manifest)
        self._within_limits(manifest)
        name = naming.versioned_name(env, version, self.store_uri)
        variant: dict[str, Any] = {
            "VariantName": naming.VARIANT, "ModelName": name, **instance_pools.variant_fields(cfg, self.sm),
            "InitialInstanceCount": cfg["initial_count"],
            "ContainerStartupHealthCheckTimeoutInSeconds": STARTUP_HEALTH_CHECK_S,
        }
        ami = inference_ami(cfg["instance_type"])
        if ami:
            variant["InferenceAmiVersion"] = ami
        if cfg["mode"] == "realtime":
            # A busy instance (every ComfyUI running) should not be sent more: SageMaker's default routing is
            # random. API reference, ProductionVariantRoutingConfig.
            variant["RoutingConfig"] = {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"}
        request: dict[str, Any] = {"EndpointConfigName": name, "ProductionVariants": [variant],
                   "Tags": naming.tags(env, version, self.store_uri)}
        if cfg["mode"] == "async":
            output: dict[str, Any] = {"S3OutputPath": f"{self.store_uri}/async/outputs/",
                                      "S3FailurePath": f"{self.store_uri}/async/failures/"}
            if self.sse == "aws:kms" and self.kms_key_id:
                output["KmsKeyId"] = self.kms_key_id
            if self.notification_topic:
                output["NotificationConfig"] = notifications.notification_config(self.notification_topic)
            # The worker runs one ComfyUI per GPU: as many requests at once as the instance has GPUs.
            request["AsyncInferenceConfig"] = {"OutputConfig": output, "ClientConfig": {
                "MaxConcurrentInvocationsPerInstance": gpu_count(cfg["instance_type"])}}
        return request

    def _within_limits(self, manifest: Manifest) -> None:
        """A version published before its type was refused, or before the configuration's max_instances or
        allowed_instance_types narrowed, is not deployed or started either."""
        cfg = _endpoint_config(manifest)
        refused = refusal(cfg["instance_type"])
        if refused:
            raise EndpointConfigInvalid(f"version {manifest['version']} of environment {manifest['name']}: {refused}")
        try:
            endpoint_config.validate(cfg, self.max_instances, self.allowed_instance_types)
        except EndpointConfigInvalid as err:
            raise EndpointConfigInvalid(f"version {manifest['version']} of environment {manifest['name']}: "
                                        f"{err.message}") from None

    def _check_quota(self, cfg: EndpointConfig, need: int, detail: str, update: bool = False) -> str | None:
        """Before anything is created: QuotaExceeded when the endpoint quota of a type of the config (each of its
        fallback types too: quotas.check_each) cannot hold `need` instances at once; a warning (returned and
        logged) when a quota cannot be read."""
        warning = quotas.check_each(self.aws_client("service-quotas"), self.region, instance_pools.types(cfg), need,
                                    detail, update)
        if warning:
            log.warning("comfyui-sagemaker: %s", warning)
        return warning

    def _create_version(self, model: dict, config: dict) -> None:
        """The version's model and config; ones left by an earlier try of the same version are reused."""
        from botocore.exceptions import ClientError

        for create, request in ((self.sm.create_model, model), (self.sm.create_endpoint_config, config)):
            try:
                create(**request)
            except ClientError as err:
                if not (_code(err) == "ValidationException" and "already exist" in str(err)):
                    raise
