"""Stop (the endpoint deleted, its config and model kept, a stopped record in the store), start (the
endpoint made again from that config, followed as a deploy is) and delete (everything made for the endpoint,
once SageMaker has deleted it)."""

from __future__ import annotations

import logging

from ..core.endpoints import EndpointBusy, EndpointNotFound, EndpointStateConflict
from ..core.records import EndpointView, Manifest
from ..core.store import KeyNotFound
from ..core.templates import now
from ..core.worker_contract import report_folder
from . import endpoint_states, naming
from .errors import AwsError, AwsNotConfigured, aws_call, translate
from .errors import error_code as _code
from .sagemaker_base import GONE_TIMEOUT_S, _endpoint_config, _not_found, version_of
from .sagemaker_deploys import SageMakerDeploys
from .sagemaker_views import Stopped

log = logging.getLogger("comfyui_sagemaker")


class SageMakerStopStart(SageMakerDeploys):
    """Stop, start and delete."""

    @aws_call
    def stop(self, name: str, by: str | None = None) -> EndpointView:
        """Delete the SageMaker endpoint, keep its config and model, and record that it is stopped (`by`: who,
        when not a person: core/idle_stop.py's IDLE)."""
        from botocore.exceptions import ClientError

        if self.store is None:
            raise AwsNotConfigured("stopping a SageMaker endpoint needs the S3 store (set store to s3)")
        endpoint = naming.endpoint_name(name, self.store_uri)
        self.proofs.cancel(name)
        d = self.describe_endpoint(endpoint)
        record = self._stopped(name, strict=True)
        if record is not None and self._hides(d):
            what = "being started" if record.get("starting") else "stopped already"
            raise EndpointStateConflict(f"endpoint {record.get('environment') or name} is {what}")
        if d is None:
            raise EndpointNotFound(f"no SageMaker endpoint runs environment {name!r}")
        status = d["EndpointStatus"]
        if not endpoint_states.of(status).deletable:
            raise EndpointBusy(f"endpoint {endpoint} is {status}; SageMaker allows no stop until that ends")
        stamp = now()
        record = self._put_stopped(name, {
            "environment": name, "endpoint_config": d["EndpointConfigName"],
            "version": version_of(d["EndpointConfigName"]), "stopped_at": stamp, "updated_at": stamp,
            "stopped_by": by})
        try:
            self._scaling().remove(endpoint)  # the scalable target names the variant: it goes with the endpoint
            self.sm.delete_endpoint(EndpointName=endpoint)
        except ClientError as err:
            if not _not_found(err):
                self._clear_stopped(name)
                if _code(err) == "ValidationException":
                    raise EndpointBusy(f"SageMaker refused to delete {endpoint}: {err}") from None
                raise
        except Exception:
            self._clear_stopped(name)
            raise
        view = self._stopped_view(name, record)
        self.on_change(view)

        def gone() -> None:  # the instances are released when SageMaker has deleted the endpoint
            try:
                if self.wait_gone(endpoint, GONE_TIMEOUT_S) and (rec := self._stopped(name)) is not None:
                    self.on_change(self._stopped_view(name, rec))
            except Exception as err:
                log.warning("comfyui-sagemaker: following the stop of %s failed: %s", endpoint, err)

        self.in_background(gone, f"sagemaker-stop-{endpoint}")
        return view

    def _kept_manifest(self, name: str, record: Stopped) -> Manifest:
        """The manifest of the version the stopped endpoint ran (its autoscaling is set up from it again)."""
        version = record.get("version")
        try:
            if version is None:
                raise ValueError("the stopped record names no version")
            return self._manifest(name, version)
        except (KeyNotFound, ValueError):  # Unreadable is a ValueError
            raise EndpointStateConflict(f"version {version} of environment {name} is no longer in the store: "
                                        "deploy the environment again instead") from None

    @aws_call
    def start(self, name: str) -> EndpointView:
        """CreateEndpoint again with the kept EndpointConfig (once SageMaker has finished deleting the old
        one), then followed as a deploy is. Returns at once, state Creating."""
        endpoint = naming.endpoint_name(name, self.store_uri)
        d = self.describe_endpoint(endpoint)
        record = self._stopped(name, strict=True)
        if record is None or not self._hides(d):
            if d is None:
                raise EndpointNotFound(f"no SageMaker endpoint runs environment {name!r}")
            raise EndpointStateConflict(f"endpoint {name} is {d['EndpointStatus']}, not stopped: there is "
                                        "nothing to start")
        if record.get("starting"):
            raise EndpointStateConflict(f"endpoint {record.get('environment') or name} is being started already")
        manifest = self._kept_manifest(name, record)
        self._within_limits(manifest)
        cfg = _endpoint_config(manifest)
        count = cfg["initial_count"]
        warning = self._check_quota(cfg, count, f"a new fleet of {count}")
        if d is None:  # the usual case: SageMaker's delete has ended
            self._create_kept(name, endpoint, record, manifest)
        else:
            record = self._put_stopped(name, {**record, "starting": True, "reason": None, "updated_at": now()})

            def when_gone() -> None:
                try:
                    if not self.wait_gone(endpoint, GONE_TIMEOUT_S):
                        raise RuntimeError(f"SageMaker did not finish deleting {endpoint} within {GONE_TIMEOUT_S} s")
                    self._create_kept(name, endpoint, record, manifest)
                except Exception as err:  # shown on the endpoint, which stays stopped
                    message = err.message if isinstance(err, AwsError) else translate(err, self.region).message
                    back = self._put_stopped(name, {**record, "starting": False, "reason": f"start failed: {message}",
                                                    "updated_at": now()})
                    self.on_change(self._stopped_view(name, back))

            self.in_background(when_gone, f"sagemaker-start-{endpoint}")
        view: EndpointView = {**self._stopped_view(name, record, "Creating"), "reason": None, "updated_at": now()}
        if warning:
            view["warning"] = warning
        self.on_change(view)
        return view

    def _create_kept(self, name: str, endpoint: str, record: Stopped, manifest: Manifest) -> None:
        self.create_endpoint(endpoint, record["endpoint_config"], name)
        self._clear_stopped(name)
        self.monitor(manifest, endpoint)

    @aws_call
    def delete(self, name: str) -> None:
        """Everything the extension made for this endpoint; safe to call again after a partial delete.
        The configs and models go once the endpoint is gone (in the background: that takes minutes)."""
        from botocore.exceptions import ClientError

        endpoint = naming.endpoint_name(name, self.store_uri)
        self.proofs.cancel(name)
        existing = self.describe_endpoint(endpoint)
        stopped = self._stopped(name, strict=True) if self._hides(existing) else None
        if stopped is not None:  # a stopped endpoint: its kept config and model go, and the record
            self._clear_stopped(name)
            if existing is not None:  # SageMaker is still deleting it: the rest once it is gone
                self.on_change({"name": name, "kind": "sagemaker", "state": "Deleting", "environment": name})
                self.in_background(lambda: self._clean_up(name, endpoint), f"sagemaker-delete-{endpoint}")
                return
            self._scaling().remove(endpoint)
            self._clean_up(name, endpoint)
            return
        if existing is None:
            # Leftovers of an earlier delete, or of one made outside: no endpoint uses them.
            self._scaling().remove(endpoint)
            self._delete_versions(endpoint)
            self._set_warning(name, None)
            raise EndpointNotFound(f"no SageMaker endpoint runs environment {name!r}; leftovers were removed")
        status = existing["EndpointStatus"]
        if not endpoint_states.of(status).deletable:
            raise EndpointBusy(f"endpoint {endpoint} is {status}; SageMaker allows no delete until that ends")
        self._scaling().remove(endpoint)
        try:
            self.sm.delete_endpoint(EndpointName=endpoint)
        except ClientError as err:
            if not _not_found(err):
                if _code(err) == "ValidationException":
                    raise EndpointBusy(f"SageMaker refused to delete {endpoint}: {err}") from None
                raise
        self.on_change({"name": name, "kind": "sagemaker", "state": "Deleting", "environment": name})
        self.in_background(lambda: self._clean_up(name, endpoint), f"sagemaker-delete-{endpoint}")

    def _clean_up(self, name: str, endpoint: str) -> None:
        try:
            if self.wait_gone(endpoint, GONE_TIMEOUT_S):
                self._delete_versions(endpoint)
                self._set_warning(name, None)
                self._delete_reports(name)
                self.on_change({"name": name, "kind": "sagemaker", "state": "Deleted", "environment": name})
        except Exception as err:  # the next delete removes the leftovers
            log.error("comfyui-sagemaker: cleaning up after endpoint %s failed: %s", endpoint, err)

    def _delete_reports(self, environment: str) -> None:
        """The workers' reports go with the endpoint (the bucket's worker-reports lifecycle rule is the backstop:
        aws/stack.py)."""
        if self.store is None:
            return
        try:
            for key in self.store.list(report_folder(environment)):
                self.store.delete(key)
        except Exception as err:  # leftovers cost a few bytes; the next endpoint's reports sort before them
            log.warning("cannot remove the worker reports of %s: %s", environment, err)
