"""SageMaker endpoints: state read from AWS, never a shadow copy.

An environment's endpoint is found by name and by tag; its state, failure
reason and instance count come from DescribeEndpoint at every look, so an
endpoint deleted in the console is simply gone here too. Deploy creates (or
updates in place, without downtime) the model, endpoint config and endpoint,
then a monitor follows it to InService or Failed and sets up autoscaling;
delete removes everything the extension made for it, and is idempotent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..core.endpoints import EndpointNotFound, Endpoints, InvocationFailed
from ..core.templates import now
from . import autoscaling, naming, runtime
from .clients import client
from .errors import ROLE_ARN, AwsNotConfigured, aws_call

log = logging.getLogger("comfyui_sagemaker")
STARTUP_HEALTH_CHECK_S = 3600  # materialising an environment (models by digest) can take a while
SETTLED = ("InService", "Failed", "OutOfService")


def _code(err: Exception) -> str:
    return str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))


class SageMakerEndpoints(Endpoints):
    kind = "sagemaker"

    def __init__(self, store_uri: str, role_arn: str, image_uri: str, region: str = "",
                 on_change: Callable[[dict], None] | None = None, clients: dict[str, Any] | None = None,
                 poll_interval: float = 15.0, store: Any = None):
        self.store_uri = store_uri
        self.role_arn = role_arn
        self.image_uri = image_uri
        self.region = region
        self.on_change = on_change or (lambda endpoint: None)
        self._clients = clients or {}
        self.poll_interval = poll_interval
        self.store = store  # the S3 store: async requests and their progress go through it
        self._monitors: dict[str, threading.Thread] = {}

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = client(service, self.region)
        return self._clients[service]

    @property
    def sm(self) -> Any:
        return self._client("sagemaker")

    # reading state from AWS

    def _describe(self, endpoint: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            return self.sm.describe_endpoint(EndpointName=endpoint)
        except ClientError as err:
            if _code(err) == "ValidationException" and "Could not find" in str(err):
                return None
            raise

    def _view(self, environment: str, d: dict) -> dict:
        variants = d.get("ProductionVariants") or [{}]
        return {
            "name": environment, "kind": "sagemaker", "state": d["EndpointStatus"],
            "environment": environment, "endpoint_name": d["EndpointName"],
            "endpoint_config": d.get("EndpointConfigName"), "reason": d.get("FailureReason"),
            "instances": variants[0].get("CurrentInstanceCount", 0),
            "updated_at": str(d.get("LastModifiedTime", "")),
        }

    @aws_call
    def get(self, name: str) -> dict:
        d = self._describe(naming.endpoint_name(name, self.store_uri))
        if d is None:
            raise EndpointNotFound(f"no SageMaker endpoint runs environment {name!r} (deleted outside?)")
        return self._view(name, d)

    @aws_call
    def list(self) -> list[dict]:
        digest = naming.store_digest(self.store_uri)
        out = []
        for page in self.sm.get_paginator("list_endpoints").paginate(NameContains=f"{naming.PREFIX}-"):
            for e in page["Endpoints"]:
                tags = {t["Key"]: t["Value"] for t in self.sm.list_tags(ResourceArn=e["EndpointArn"])["Tags"]}
                if tags.get(naming.TAG_STORE) != digest:
                    continue  # another store's endpoint, or not ours
                d = self._describe(e["EndpointName"])
                if d is not None:
                    out.append(self._view(tags.get(naming.TAG_ENVIRONMENT, e["EndpointName"]), d))
        return out

    def logs(self, name: str, tail: int = 200) -> str:
        endpoint = naming.endpoint_name(name, self.store_uri)
        return (f"SageMaker endpoint {endpoint}: its logs are in CloudWatch Logs, group "
                f"/aws/sagemaker/Endpoints/{endpoint}\n")

    # deploying

    def _check_configured(self) -> None:
        if not self.store_uri.startswith("s3://"):
            raise AwsNotConfigured("SageMaker endpoints read their environment from S3: set store to s3")
        if not ROLE_ARN.fullmatch(self.role_arn or ""):
            raise AwsNotConfigured(f"sagemaker_role_arn {self.role_arn!r} is not an IAM role ARN "
                                   "(arn:aws:iam::<account>:role/<name>)")
        if not self.image_uri:
            raise AwsNotConfigured("worker_image_uri is not set: build and push the worker image (README)")

    def model_request(self, manifest: dict) -> dict:
        env, version = manifest["name"], manifest["version"]
        name = naming.versioned_name(env, version, self.store_uri)
        manifest_uri = f"{self.store_uri}/environments/{env.lower()}/versions/v{version:06d}.json"
        return {
            "ModelName": name,
            "ExecutionRoleArn": self.role_arn,
            "PrimaryContainer": {"Image": self.image_uri, "Environment": {
                "SAGEMAKER_MANIFEST_URI": manifest_uri, "WORKER_MODELS": "eager",
                "WORKER_INVOCATION_TIMEOUT": "3600"}},
            "Tags": naming.tags(env, version, self.store_uri),
        }

    def endpoint_config_request(self, manifest: dict) -> dict:
        env, version, cfg = manifest["name"], manifest["version"], manifest["endpoint"]
        name = naming.versioned_name(env, version, self.store_uri)
        request = {
            "EndpointConfigName": name,
            "ProductionVariants": [{
                "VariantName": naming.VARIANT, "ModelName": name, "InstanceType": cfg["instance_type"],
                "InitialInstanceCount": cfg["initial_count"],
                "ContainerStartupHealthCheckTimeoutInSeconds": STARTUP_HEALTH_CHECK_S,
            }],
            "Tags": naming.tags(env, version, self.store_uri),
        }
        if cfg["mode"] == "async":
            request["AsyncInferenceConfig"] = {
                "OutputConfig": {"S3OutputPath": f"{self.store_uri}/async/outputs/",
                                 "S3FailurePath": f"{self.store_uri}/async/failures/"},
                "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 1},
            }
        return request

    @aws_call
    def deploy(self, manifest: dict) -> dict:
        self._check_configured()
        env = manifest["name"]
        endpoint = naming.endpoint_name(env, self.store_uri)
        model = self.model_request(manifest)
        config = self.endpoint_config_request(manifest)
        self.sm.create_model(**model)
        self.sm.create_endpoint_config(**config)
        existing = self._describe(endpoint)
        scaling = autoscaling.Autoscaling(self._client("application-autoscaling"), self._client("cloudwatch"))
        if existing is None:
            self.sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=config["EndpointConfigName"],
                                    Tags=naming.tags(env, None, self.store_uri))
        else:
            old_config = self.sm.describe_endpoint_config(EndpointConfigName=existing["EndpointConfigName"])
            old_type = old_config["ProductionVariants"][0]["InstanceType"]
            if old_type != manifest["endpoint"]["instance_type"]:
                # AWS refuses to change the instance type while autoscaling is registered on the variant.
                scaling.remove(endpoint)
            self.sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=config["EndpointConfigName"])
        state = {"name": env, "kind": "sagemaker", "state": "Creating" if existing is None else "Updating",
                 "environment": env, "endpoint_name": endpoint, "version": manifest["version"],
                 "reason": None, "updated_at": now()}
        self.on_change(state)
        self._monitor(manifest, endpoint)
        return state

    def _monitor(self, manifest: dict, endpoint: str) -> None:
        thread = threading.Thread(target=self.settle, args=(manifest, endpoint), daemon=True,
                                  name=f"sagemaker-monitor-{endpoint}")
        self._monitors[endpoint] = thread
        thread.start()

    def settle(self, manifest: dict, endpoint: str, timeout: float = 7200) -> dict | None:
        """Follow the endpoint until it settles; then set up autoscaling and remove older versions."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                d = self._describe(endpoint)
            except Exception as err:  # keep following through a passing error
                d, last = None, str(err)
            if d is None:
                return None
            if d["EndpointStatus"] != last:
                last = d["EndpointStatus"]
                self.on_change(self._view(manifest["name"], d))
            if d["EndpointStatus"] in SETTLED:
                if d["EndpointStatus"] == "InService":
                    self._after_in_service(manifest, endpoint, d)
                return d
            time.sleep(self.poll_interval)
        return None

    @aws_call
    def _after_in_service(self, manifest: dict, endpoint: str, d: dict) -> None:
        cfg = manifest["endpoint"]
        scaling = autoscaling.Autoscaling(self._client("application-autoscaling"), self._client("cloudwatch"))
        if cfg.get("autoscaling"):
            scaling.apply(endpoint, cfg["mode"], cfg["autoscaling"]["min"], cfg["autoscaling"]["max"])
        current = d["EndpointConfigName"]
        self._delete_versions(endpoint, keep=current)

    def _delete_versions(self, endpoint: str, keep: str | None = None) -> None:
        from botocore.exceptions import ClientError

        prefix = f"{endpoint}-v"
        for page in self.sm.get_paginator("list_endpoint_configs").paginate(NameContains=prefix):
            for c in page["EndpointConfigs"]:
                if c["EndpointConfigName"] != keep and c["EndpointConfigName"].startswith(prefix):
                    try:
                        self.sm.delete_endpoint_config(EndpointConfigName=c["EndpointConfigName"])
                    except ClientError as err:
                        if _code(err) != "ValidationException":
                            raise
        for page in self.sm.get_paginator("list_models").paginate(NameContains=prefix):
            for m in page["Models"]:
                if m["ModelName"] != keep and m["ModelName"].startswith(prefix):
                    try:
                        self.sm.delete_model(ModelName=m["ModelName"])
                    except ClientError as err:
                        if _code(err) != "ValidationException":
                            raise

    @aws_call
    def delete(self, name: str) -> None:
        """Everything the extension made for this endpoint; safe to call again after a partial delete."""
        from botocore.exceptions import ClientError

        endpoint = naming.endpoint_name(name, self.store_uri)
        existed = self._describe(endpoint) is not None
        autoscaling.Autoscaling(self._client("application-autoscaling"), self._client("cloudwatch")).remove(endpoint)
        if existed:
            self.on_change({"name": name, "kind": "sagemaker", "state": "Deleting", "environment": name})
            try:
                self.sm.delete_endpoint(EndpointName=endpoint)
            except ClientError as err:
                if _code(err) != "ValidationException":
                    raise
        self._delete_versions(endpoint)
        if not existed:
            raise EndpointNotFound(f"no SageMaker endpoint runs environment {name!r}; leftovers were removed")

    def invoke(self, name: str, body: dict, on_event: Callable[[dict], None]) -> dict:
        endpoint = self.check_ready(name)
        try:
            config = self.sm.describe_endpoint_config(EndpointConfigName=endpoint["endpoint_config"])
        except Exception as err:
            raise InvocationFailed(f"cannot read endpoint {endpoint['endpoint_name']}'s config: {err}") from None
        runtime_client = self._client("sagemaker-runtime")
        if "AsyncInferenceConfig" not in config:
            return runtime.invoke_realtime(runtime_client, endpoint["endpoint_name"], body, on_event)
        if self.store is None:
            raise InvocationFailed("async endpoints need the S3 store")
        if endpoint.get("instances", 1) == 0:
            # Async with min 0: the backlog alarm brings an instance back; say so instead of looking stuck.
            on_event({"type": "sagemaker.note", "data": {
                "message": "waiting for an instance: the endpoint scaled in to zero and is scaling out for this run"}})

        def still_there() -> bool:
            try:
                return self._describe(endpoint["endpoint_name"]) is not None
            except Exception:  # a passing error is not a deletion
                return True

        return runtime.invoke_async(runtime_client, self.store.s3, self.store, self.store_uri,
                                    endpoint["endpoint_name"], body, on_event, still_there=still_there)
