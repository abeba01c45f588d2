"""A deploy's life cycle (aws/endpoint_states.py): create, update in place (through its proofs and
guardrails) or recreate; the monitor that follows it to a settled state, a rollback SageMaker made reported as
such; autoscaling once InService; the versions no longer served removed but the KEPT_VERSIONS newest."""

from __future__ import annotations

import logging
import time
from functools import partial

from ..core import prices
from ..core.endpoints import EndpointBusy
from ..core.instance_families import gpu_count
from ..core.records import EndpointView, Manifest
from ..core.templates import now
from . import deploy_guardrails, endpoint_states, instance_pools, naming
from .errors import AwsError, aws_call, translate
from .errors import error_code as _code
from .sagemaker_base import GONE_TIMEOUT_S, KEPT_VERSIONS, STARTUP_HEALTH_CHECK_S, _endpoint_config, version_of
from .sagemaker_proofs import instances_needed
from .sagemaker_requests import SageMakerRequests
from .sagemaker_views import SageMakerViews

log = logging.getLogger("comfyui_sagemaker")


class SageMakerDeploys(SageMakerViews, SageMakerRequests):
    """Deploy, rollback and the monitor that follows them."""

    @aws_call
    def deploy(self, manifest: Manifest) -> EndpointView:
        return self._deploy(manifest, kept=False)

    @aws_call
    def rollback(self, manifest: Manifest) -> EndpointView:
        """Serve an older version again: UpdateEndpoint to its kept EndpointConfig (KEPT_VERSIONS) when SageMaker
        still has it, nothing created; else its model and config are made again from its manifest, as a deploy
        makes them (the manifest and its blobs are in the store: nothing is uploaded). UpdateEndpoint lets the
        requests in flight finish on the instances that took them ("Deploys the EndpointConfig ... to a new
        fleet ... then deletes the old instances": SageMaker API reference, UpdateEndpoint)."""
        self.check_configured()
        self._within_limits(manifest)  # a kept config made under older limits is not served again past them
        return self._deploy(manifest, kept=self._config_kept(manifest), prove=False)

    def _config_kept(self, manifest: Manifest) -> bool:
        """Whether SageMaker still has the version's EndpointConfig. Its model goes after it (_remove_version):
        a kept config has its model, unless someone deleted that by hand (then the update fails and
        SageMaker rolls it back, which settle reports)."""
        from botocore.exceptions import ClientError

        name = naming.versioned_name(manifest["name"], manifest["version"], self.store_uri)
        try:
            self.sm.describe_endpoint_config(EndpointConfigName=name)
            return True
        except ClientError as err:
            if _code(err) == "ValidationException" and "Could not find" in str(err):
                return False
            raise

    def _deploy(self, manifest: Manifest, kept: bool, prove: bool = True) -> EndpointView:
        self.check_configured()
        self._within_limits(manifest)  # before anything is asked of SageMaker
        if not kept:  # a fallback list this botocore cannot send: said before anything is asked either
            instance_pools.check_sendable(_endpoint_config(manifest), self.sm)
        env, version = manifest["name"], manifest["version"]
        endpoint = naming.endpoint_name(env, self.store_uri)
        existing = self.describe_endpoint(endpoint)
        action, reason, old = "create", None, {}
        if existing is not None:
            status = existing["EndpointStatus"]
            action = endpoint_states.of(status).on_deploy
            if action == "wait":
                raise EndpointBusy(f"endpoint {endpoint} is {status}; deploy again once it has settled")
            if action == "recreate":
                reason = f"recreating: the endpoint was {status} ({existing.get('FailureReason') or 'no reason'})"
            else:
                old = self.sm.describe_endpoint_config(EndpointConfigName=existing["EndpointConfigName"])
                if ("AsyncInferenceConfig" in old) != (_endpoint_config(manifest).get("mode") == "async"):
                    action, reason = "recreate", "recreating: SageMaker cannot switch async and real-time in place"
        cfg = _endpoint_config(manifest)
        update, proving, same_type = None, None, True
        if action == "update":
            assert existing is not None
            current = (existing.get("ProductionVariants") or [{}])[0].get("CurrentInstanceCount", 0)
            same_type = instance_pools.variant_types(old["ProductionVariants"][0]) == instance_pools.types(cfg)
            update = deploy_guardrails.plan(endpoint, current, cfg, same_type, STARTUP_HEALTH_CHECK_S)
            proving = self.proofs.plan(manifest, current, same_type) if prove else None
            warning = self._check_quota(cfg, *instances_needed(update, proving), update=True)
        else:
            count = cfg["initial_count"]
            warning = self._check_quota(cfg, count, f"a new fleet of {count}")
        config_name = naming.versioned_name(env, version, self.store_uri)
        self.proofs.begin(env)
        if not kept:  # a rollback to a kept version creates nothing
            self._create_version(self.model_request(manifest), self.endpoint_config_request(manifest))
        scaling = self._scaling()
        if action == "create":
            self._clear_stopped(env)  # a deploy starts a stopped endpoint, on the new version
            self.create_endpoint(endpoint, config_name, env)
        elif action == "recreate":
            scaling.remove(endpoint)
            self.sm.delete_endpoint(EndpointName=endpoint)
        else:
            assert update is not None and existing is not None
            switch = partial(deploy_guardrails.apply, self.sm, self.cloudwatch, scaling, endpoint, config_name, update,
                             not same_type)
            if proving is not None:  # the update waits for the proofs of the templates bound to the environment
                return self.proofs.start(manifest, proving, version_of(existing["EndpointConfigName"]), switch, warning)
            switch()
        state: EndpointView = {"name": env, "kind": "sagemaker", "environment": env, "endpoint_name": endpoint,
                 "state": {"create": "Creating", "recreate": "Deleting", "update": "Updating"}[action],
                 "version": version, "reason": reason, "updated_at": now()}
        if warning:
            state["warning"] = warning
        self.on_change(state)
        self.monitor(manifest, endpoint, recreate=action == "recreate")
        return state

    def monitor(self, manifest: Manifest, endpoint: str, recreate: bool = False) -> None:
        self.in_background(lambda: self.settle(manifest, endpoint, recreate=recreate), f"sagemaker-monitor-{endpoint}")

    def settle(self, manifest: Manifest, endpoint: str, timeout: float = 7200, recreate: bool = False) -> dict | None:
        """Follow the endpoint until it settles (after recreating it, if asked); then autoscaling, and the
        versions it no longer uses are removed (but the KEPT_VERSIONS newest). Returns the last description
        (None if it is gone)."""
        env = manifest["name"]
        ours = naming.versioned_name(env, manifest["version"], self.store_uri)
        try:
            if recreate:
                if not self.wait_gone(endpoint, GONE_TIMEOUT_S):
                    self.on_change({"name": env, "kind": "sagemaker", "state": "Failed", "environment": env,
                                    "reason": f"endpoint {endpoint} was not deleted within {GONE_TIMEOUT_S} s"})
                    return None
                self.create_endpoint(endpoint, ours, env)
            deadline = time.monotonic() + timeout
            last = None
            while time.monotonic() < deadline:
                d = self.describe_endpoint(endpoint)
                if d is None:
                    return None
                status = d["EndpointStatus"]
                view = self.view_of(env, d)
                if d["EndpointConfigName"] != ours and endpoint_states.of(status).settled and status != "Failed":
                    # SageMaker rolled the update back: the old version serves, ours failed.
                    view["reason"] = self._rolled_back(manifest["version"], d)
                    self.on_change(view)
                    self.remove_version(ours)
                    return d
                if status != last:
                    last = status
                    self.on_change(view)
                if endpoint_states.of(status).settled:
                    if endpoint_states.of(status).serving:
                        self._after_in_service(manifest, endpoint, d)
                    return d
                time.sleep(self.poll_interval)
            return None
        except Exception as err:  # a monitor's failure is shown on the endpoint, never lost in a thread
            message = translate(err, self.region).message if not isinstance(err, AwsError) else err.message
            log.error("comfyui-sagemaker: following endpoint %s failed: %s", endpoint, message)
            self.on_change({"name": env, "kind": "sagemaker", "state": "Failed", "environment": env,
                            "reason": f"following the deploy failed: {message}"})
            return None

    def _rolled_back(self, version: int, d: dict) -> str:
        """Why the old version still serves: an alarm SageMaker rolled back on (deploy_guardrails), or its
        FailureReason."""
        why = d.get("FailureReason") or "no reason given"
        serving = version_of(d["EndpointConfigName"])
        try:
            alarm = deploy_guardrails.rollback_alarm(self.cloudwatch, d)
        except Exception as err:  # the reason is still said, without the alarm's name
            log.warning("comfyui-sagemaker: cannot read the rollback alarm of %s: %s", d["EndpointName"], err)
            alarm = None
        if alarm:
            return f"version {version} rolled back by SageMaker (alarm {alarm}: {why}); still serving version {serving}"
        return f"version {version} did not deploy ({why}); still serving version {serving}"

    def _after_in_service(self, manifest: Manifest, endpoint: str, d: dict) -> None:
        cfg = _endpoint_config(manifest)
        env = manifest["name"]
        try:
            scaling = cfg.get("autoscaling")
            if scaling:
                self._scaling().apply(endpoint, cfg["mode"], scaling["min"], scaling["max"],
                                      gpu_count(cfg["instance_type"]))
            else:  # the explicit always-on choice (autoscaling null): said in money, never silently
                count = cfg["initial_count"]
                log.warning("comfyui-sagemaker: endpoint %s has no autoscaling (autoscaling null): %s", endpoint,
                            "; if it falls back to ".join(prices.sentence(self.region, t, count, count)
                                                          for t in instance_pools.types(cfg)))
            self._set_warning(env, None)
        except Exception as err:
            # Without it the endpoint never scales (never to zero, billed around the clock): say so on it.
            message = err.message if isinstance(err, AwsError) else translate(err, self.region).message
            warning = f"autoscaling was not set up: {message}"
            log.error("comfyui-sagemaker: endpoint %s: %s", endpoint, warning)
            self._set_warning(env, warning)
            self.on_change({**self.view_of(env, d), "warning": warning})
        self._delete_versions(endpoint, keep=d["EndpointConfigName"], kept=KEPT_VERSIONS)

    def remove_version(self, name: str) -> None:
        from botocore.exceptions import ClientError

        for delete, key in ((self.sm.delete_endpoint_config, "EndpointConfigName"),
                            (self.sm.delete_model, "ModelName")):
            try:
                delete(**{key: name})
            except ClientError as err:
                if _code(err) != "ValidationException":
                    raise

    def _delete_versions(self, endpoint: str, keep: str | None = None, kept: int = 0) -> None:
        """Every version's config and model but `keep` (the one the live endpoint uses) and the `kept` newest
        others (for a rollback: KEPT_VERSIONS)."""
        prefix = f"{endpoint}-v"
        names = set()
        for page in self.sm.get_paginator("list_endpoint_configs").paginate(NameContains=prefix):
            names |= {c["EndpointConfigName"] for c in page["EndpointConfigs"]}
        for page in self.sm.get_paginator("list_models").paginate(NameContains=prefix):
            names |= {m["ModelName"] for m in page["Models"]}
        others = {n for n in names if n != keep and n.startswith(prefix) and version_of(n) is not None}
        spared = sorted({version_of(n) for n in others}, key=lambda v: v or 0, reverse=True)[:kept]
        for name in sorted(others):
            if version_of(name) not in spared:
                self.remove_version(name)
