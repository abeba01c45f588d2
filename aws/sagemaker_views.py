"""What an endpoint looks like (EndpointView): DescribeEndpoint read with what the store adds (the worker's
report, the warning, the serving version's config), or the stopped record speaking for an endpoint SageMaker no
longer has; get, list, logs and usage."""

from __future__ import annotations

import builtins
import json
import logging
from datetime import datetime
from typing import Any

from typing_extensions import NotRequired, TypedDict

from ..core.costs import Span
from ..core.endpoints import STOPPED, EndpointNotFound
from ..core.environments import manifest_key, read_manifest
from ..core.idle_stop import minutes as idle_minutes
from ..core.records import EndpointConfig, EndpointView, InstancePoolView, Manifest
from ..core.shapes import ShapeInvalid, validate
from ..core.store import KeyNotFound
from ..core.unreadable import Unreadable, load_object, report
from ..core.worker_contract import WorkerReport, read_report, report_folder
from . import instance_pools, naming
from .errors import aws_call
from .sagemaker_base import SageMakerBase, version_of

log = logging.getLogger("comfyui_sagemaker")


def worker_summary(report: WorkerReport | None) -> dict[str, Any] | None:
    """Which worker the report is from and how it is: its state, instance, start, version."""
    if not report:
        return None
    return {"state": report["state"], "reason": report.get("reason"), "instance": report.get("instance"),
            "started_at": report.get("started_at"), "updated_at": report.get("updated_at"),
            "ready_after_s": report.get("ready_after_s"), "version": (report.get("environment") or {}).get("version")}


class Stopped(TypedDict):
    """`endpoints/<environment>/stopped.json`: the endpoint is stopped (or being started) on this config."""

    endpoint_config: str
    environment: NotRequired[str]
    version: NotRequired[int | None]
    stopped_at: NotRequired[str]
    updated_at: NotRequired[str]
    starting: NotRequired[bool]
    reason: NotRequired[str | None]
    stopped_by: NotRequired[str | None]  # "idle": the worker's idle stop (worker/idle_stop.py)


class SageMakerViews(SageMakerBase):
    """Endpoint views: SageMaker's description, the store's records and reports."""

    def _warning_key(self, environment: str) -> str:
        return f"endpoints/{environment.lower()}/warning.json"

    def _warning(self, environment: str) -> str | None:
        if self.store is None:
            return None
        try:
            return json.loads(self.store.get(self._warning_key(environment)).data).get("message")
        except Exception:  # none, or unreadable: no warning to show
            return None

    def _set_warning(self, environment: str, message: str | None) -> None:
        if self.store is None:
            return
        try:
            if message:
                self.store.put(self._warning_key(environment), json.dumps({"message": message}).encode())
            elif self._warning(environment) is not None:
                self.store.delete(self._warning_key(environment))
        except Exception as err:  # the warning is a courtesy: never fail the deploy for it
            log.warning("cannot record the endpoint warning: %s", err)

    def worker_report(self, environment: str) -> WorkerReport | None:
        """The newest worker's report (worker/coldstart.py): the containers write it to the store, since
        nothing else of theirs reaches the extension. One LIST of one key and one GET, however many
        instances have ever started (keys sort newest first)."""
        if self.store is None:
            return None
        try:
            keys = self.store.list_page(report_folder(environment), limit=1)
            return read_report(json.loads(self.store.get(keys[0]).data)) if keys else None
        except Exception as err:  # a report is a courtesy (one that cannot be read too): an endpoint shows without it
            log.warning("cannot read the worker report of %s: %s", environment, err)
            return None

    def _config(self, environment: str, version: int | None) -> EndpointConfig | None:
        """The endpoint config the serving version asked for (DescribeEndpoint does not say its instance type
        nor its idle stop): from that version's manifest, read once, since a manifest never changes."""
        if self.store is None or version is None:
            return None
        key = (environment.lower(), version)
        if key not in self._configs:
            try:
                manifest = self._manifest(environment, version)
            except Exception as err:  # a courtesy, as the worker report: the endpoint shows without it
                log.warning("cannot read version %s of %s: %s", version, environment, err)
                return None
            self._configs[key] = manifest.get("endpoint")
        return self._configs[key]

    def _instance_type(self, environment: str, version: int | None) -> str | None:
        cfg = self._config(environment, version)
        return cfg.get("instance_type") if cfg else None

    def _instances(self, environment: str, version: int | None,
                   summary: dict) -> tuple[str | None, list[InstancePoolView] | None]:
        """The view's instance type: the config's; with instance pools, the one most instances run on (the
        preferred when none runs), and the instances per type (aws/instance_pools.py)."""
        cfg = self._config(environment, version)
        configured = instance_pools.types(cfg) if cfg and cfg.get("instance_type") else []
        preferred = configured[0] if configured else None
        pools = instance_pools.serving(summary, configured)
        return (instance_pools.serving_type(pools) or preferred if pools else preferred), pools

    def _manifest(self, environment: str, version: int) -> Manifest:
        """A version's manifest from the store; KeyNotFound, Unreadable."""
        key = manifest_key(environment, version)
        return read_manifest(self.store.get(key).data, key, environment, version)

    def view_of(self, environment: str, d: dict) -> EndpointView:
        variants = d.get("ProductionVariants") or [{}]
        report = self.worker_report(environment)
        instance_type, pools = self._instances(environment, version_of(d.get("EndpointConfigName")), variants[0])
        view: EndpointView = {
            "name": environment, "kind": "sagemaker", "state": d["EndpointStatus"],
            "environment": environment, "endpoint_name": d["EndpointName"],
            "endpoint_config": d.get("EndpointConfigName"), "version": version_of(d.get("EndpointConfigName")),
            "reason": d.get("FailureReason"), "instances": variants[0].get("CurrentInstanceCount", 0),
            "instance_type": instance_type,
            "idle_stop_minutes": idle_minutes(self._config(environment, version_of(d.get("EndpointConfigName")))),
            "warning": self._warning(environment), "updated_at": str(d.get("LastModifiedTime", "")),
            # The newest instance's cold start, as its worker reported it (see worker/coldstart.py).
            "phases": (report.get("phases") if report else None) or [],
            "activity": report.get("activity") if report else None,
            "comfyuis": (report.get("comfyuis") if report else None) or [],
            "worker": worker_summary(report),
        }
        if pools is not None:
            view["instance_pools"] = pools
        return self.proofs.view(environment, view)

    # stopped endpoints: a record in the store, the config and model kept in SageMaker

    def _stopped_key(self, environment: str) -> str:
        return f"endpoints/{environment.lower()}/stopped.json"

    def _stopped(self, environment: str, strict: bool = False) -> Stopped | None:
        """The stopped record, or None. A store that cannot answer counts as none, unless `strict`."""
        if self.store is None:
            return None
        key = self._stopped_key(environment)
        try:
            try:
                return validate(Stopped, load_object(self.store.get(key).data, key))
            except ShapeInvalid as err:
                raise Unreadable(key, err.reason) from None
        except KeyNotFound:
            return None
        except Unreadable as err:  # logged once; counts as none (a deploy makes the endpoint anew)
            report(err.key, err.reason)
            return None
        except Exception as err:
            if strict:
                raise
            log.warning("cannot read whether endpoint %s is stopped: %s", environment, err)
            return None

    def _put_stopped(self, environment: str, record: Stopped) -> Stopped:
        self.store.put(self._stopped_key(environment), json.dumps(record).encode())
        return record

    def _clear_stopped(self, environment: str) -> None:
        if self.store is None:
            return
        try:
            self.store.delete(self._stopped_key(environment))
        except KeyNotFound:
            pass

    @staticmethod
    def _hides(d: dict | None) -> bool:
        """A stopped record speaks for the endpoint while SageMaker has none, or is deleting it."""
        return d is None or d["EndpointStatus"] == "Deleting"

    def _stopped_view(self, environment: str, record: Stopped, state: str | None = None) -> EndpointView:
        return {
            "name": record.get("environment") or environment, "kind": "sagemaker",
            "state": state or ("Creating" if record.get("starting") else STOPPED),
            "environment": record.get("environment") or environment,
            "endpoint_name": naming.endpoint_name(environment, self.store_uri),
            "endpoint_config": record["endpoint_config"], "version": record.get("version"),
            "reason": record.get("reason"), "instances": 0, "warning": None,
            "updated_at": record.get("updated_at"), "stopped_at": record.get("stopped_at"),
            "stopped_by": record.get("stopped_by"),
            "idle_stop_minutes": idle_minutes(self._config(environment, record.get("version"))),
            "phases": [], "activity": None, "comfyuis": [], "worker": None,
        }

    @aws_call
    def get(self, name: str) -> EndpointView:
        d = self.describe_endpoint(naming.endpoint_name(name, self.store_uri))
        if self._hides(d):
            record = self._stopped(name)
            if record is not None:
                return self._stopped_view(name, record)
        if d is None:
            self.forget_views(naming.endpoint_name(name, self.store_uri))
            raise EndpointNotFound(f"no SageMaker endpoint runs environment {name!r} (deleted outside?)")
        return self._keep(self.view_of(name, d))

    @aws_call
    def list(self) -> builtins.list[EndpointView]:
        digest = naming.store_digest(self.store_uri)
        stopped = self._all_stopped()
        out = []
        for page in self.sm.get_paginator("list_endpoints").paginate(NameContains=f"{naming.PREFIX}-"):
            for e in page["Endpoints"]:
                if not e["EndpointName"].startswith(f"{naming.PREFIX}-") or naming.is_proof_endpoint(e["EndpointName"]):
                    continue  # NameContains also finds `xcs-`: not ours, and ListTags is granted on cs-* only
                tags = {t["Key"]: t["Value"] for t in self.sm.list_tags(ResourceArn=e["EndpointArn"])["Tags"]}
                if tags.get(naming.TAG_STORE) != digest:
                    continue  # another store's endpoint, or not ours
                d = self.describe_endpoint(e["EndpointName"])
                name = tags.get(naming.TAG_ENVIRONMENT, e["EndpointName"])
                if d is not None and not (self._hides(d) and name.lower() in stopped):
                    out.append(self.view_of(name, d))
        listed = {e["name"].lower() for e in out}
        out += [self._stopped_view(env, record) for env, record in sorted(stopped.items()) if env not in listed]
        return out

    def _all_stopped(self) -> dict[str, Stopped]:
        """Every stopped record of this store, by lowercased environment name."""
        if self.store is None:
            return {}
        out = {}
        try:
            for key in self.store.list("endpoints/"):
                parts = key.split("/")
                if len(parts) == 3 and parts[2] == "stopped.json":
                    record = self._stopped(parts[1])
                    if record is not None:
                        out[parts[1]] = record
        except Exception as err:  # the running endpoints still show
            log.warning("cannot list the stopped endpoints: %s", err)
        return out

    @aws_call
    def logs(self, name: str, tail: int = 200, contains: str | None = None) -> str:
        from .endpoint_logs import read_logs

        return read_logs(self.aws_client("logs"), naming.endpoint_name(name, self.store_uri), tail, contains)

    @aws_call
    def usage(self, endpoints: builtins.list[EndpointView], start: datetime,
              end: datetime) -> dict[str, builtins.list[Span]]:
        """From CloudWatch, when someone asks what the endpoints cost (aws/endpoint_usage.py)."""
        from .endpoint_usage import usage

        return usage(self.aws_client("cloudwatch"), endpoints, start, end)
