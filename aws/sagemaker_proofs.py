"""The proof run of a SageMaker update: the templates bound to the environment are proven on the new version
(core/proofs.py, as a local redeploy proves them on its second worker) before the guarded update moves traffic.

Where the proofs run: a temporary endpoint of its own (naming.proof_endpoint_name, tagged as the environment's
endpoint, so teardown finds a leftover), made from the new version's model and config with one instance, for
async and real-time endpoints alike. It is deleted once the proofs end, whatever happens (a failure, a delete
or stop of the endpoint meanwhile), and SageMaker has finished deleting it before the guarded update starts
(its instance counts against the same quota). Why not a second production variant at weight 0 on the serving
endpoint: InvokeEndpointAsync has no TargetVariant (botocore's sagemaker-runtime model: only InvokeEndpoint and
InvokeEndpointWithResponseStream have it), and for real-time endpoints each UpdateEndpoint "deploys the
EndpointConfig ... to a new fleet of instances" (API reference, UpdateEndpoint): adding the variant, then
dropping it, would bring up the serving variant's whole fleet twice, and a config whose variant names differ
from the old one's cannot take deployment guardrails ("your new endpoint configuration must have the same
variant name as the old endpoint configuration": Developer Guide, Deployment guardrails, Exclusions), so
neither update would be rolling. A temporary endpoint leaves the serving endpoint alone until the proofs
passed; then the usual guarded update (aws/deploy_guardrails.py) follows.

What it costs is said before it starts: the instance's hourly price (core/prices.py) for an estimate of its
life (SageMaker's start-up of an instance, the environment's own cold start as its serving worker last
reported it, and a few minutes per proof).

A failing proof stops the update: the new version's model and config go, the old version serves on, and the
endpoint says which template failed with its node error (core/proofs.py's summary), in the same fields as a
local endpoint (`proof_failed`, `reason`), kept in the store (`endpoints/<environment>/proof.json`) since
SageMaker's own description says nothing of it. A first deploy and a rollback are not proven (as on local).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from typing_extensions import TypedDict

from ..core import prices
from ..core.endpoints import EndpointBusy
from ..core.proofs import Prover, kept, summary
from ..core.records import EndpointConfig, EndpointView, Manifest, ProofRun
from ..core.store import KeyNotFound
from ..core.templates import now
from ..core.worker_contract import Invocation, WorkerResult
from . import endpoint_states, naming, runtime
from .errors import AwsError, translate
from .errors import error_code as _code

if TYPE_CHECKING:
    from .deploy_guardrails import Plan
    from .sagemaker_endpoints import SageMakerEndpoints

log = logging.getLogger("comfyui_sagemaker")
START_MINUTES = 8  # SageMaker's own start of a GPU instance and its health checks, before the worker's cold start
COLD_START_MINUTES = 10  # the worker's (materialising the environment) when its serving worker never said
MINUTES_PER_PROOF = 2
GONE_TIMEOUT_S = 1800


class Proving(TypedDict):
    version: int
    endpoint: str  # the temporary endpoint
    activity: str
    started_at: str
    until: float  # epoch seconds: a record past it is a process that died while proving (nothing proves now)


class ProofRecord(TypedDict, total=False):
    """`endpoints/<environment>/proof.json`: the proof run under way, or the one that stopped the last update."""

    proving: Proving | None
    failed: ProofRun | None
    reason: str | None


@dataclass(frozen=True)
class ProofPlan:
    """The proofs of one update: the temporary endpoint and config, what it adds to the quota's count, its price."""

    version: int
    templates: int
    endpoint: str
    config: str
    peak: int  # instances of the new version's type at once while it runs (the serving ones of that type and it)
    detail: str
    price: str
    activity: str


def _config(manifest: Manifest) -> EndpointConfig:
    return manifest.get("endpoint") or {"kind": "sagemaker"}


def record_key(environment: str) -> str:
    return f"endpoints/{environment.lower()}/proof.json"


def price_text(region: str, instance_type: str, minutes: int) -> str:
    """'about $0.40: ml.g5.xlarge at $1.21/h for about 20 min' (core/prices.py's table; price unknown said so)."""
    hourly = prices.hourly(region, instance_type)
    if hourly is None:
        return f"{prices.UNKNOWN} for {instance_type} in {region or 'no region'}; about {minutes} min of one instance"
    return f"about {prices.money(hourly * minutes / 60)}: {instance_type} at {prices.money(hourly)}/h for about " \
           f"{minutes} min"


def instances_needed(update: Plan, proving: ProofPlan | None) -> tuple[int, str]:
    """The instances of the new version's type the deploy needs at once: the update's peak, or the temporary
    endpoint's beside the serving fleet if that is more (they never run together: the temporary one is gone
    before the update starts)."""
    if proving is None or proving.peak <= update.peak:
        return update.peak, update.detail
    return proving.peak, proving.detail


class SageMakerProofs:
    """The proofs of a SageMaker endpoint's updates, for `owner` (aws/sagemaker_endpoints.py)."""

    def __init__(self, owner: SageMakerEndpoints, prover: Callable[[], Prover | None]):
        self.owner = owner
        self.prover = prover
        self._lock = threading.Lock()
        self._cancelled: dict[str, threading.Event] = {}  # by lowercased environment: a proof run under way
        self._settled: dict[str, list[Callable[[], None]]] = {}

    # the plan, before anything is created

    def plan(self, manifest: Manifest, running: int, same_type: bool) -> ProofPlan | None:
        """The proofs of an update to `manifest`'s version of an endpoint running `running` instances (`same_type`:
        of the new version's type); None when no bound template has a proof (nothing to prove)."""
        prover = self.prover()
        if prover is None or self.owner.store is None:
            return None
        env, version = manifest["name"], manifest["version"]
        templates = len(prover.bound(env, version))
        if not templates:
            return None
        instance_type = _config(manifest).get("instance_type", "")
        report = self.owner.worker_report(env)
        cold = report.get("ready_after_s") if report else None  # how long its last cold start took
        minutes = START_MINUTES + (math.ceil(cold / 60) if isinstance(cold, (int, float)) else COLD_START_MINUTES) \
            + MINUTES_PER_PROOF * templates
        price = price_text(self.owner.region, instance_type, minutes)
        beside = running if same_type else 0
        endpoint = naming.proof_endpoint_name(env, self.owner.store_uri)
        return ProofPlan(
            version=version, templates=templates, endpoint=endpoint, config=f"{endpoint}-v{version}",
            peak=beside + 1, detail=f"{beside} running and a temporary endpoint of 1 to prove version {version}",
            price=price, activity=f"proving version {version} on a temporary endpoint ({price})")

    # the run, in the background

    def start(self, manifest: Manifest, plan: ProofPlan, serving: int | None, switch: Callable[[], None],
              warning: str | None) -> EndpointView:
        """Prove `plan` in the background, then `switch()` (the guarded update) if every proof passed. Returns the
        endpoint's view as the deploy answers it: Updating, with what it does and what that costs."""
        from .sagemaker_endpoints import INVOCATION_TIMEOUT_S, STARTUP_HEALTH_CHECK_S

        env = manifest["name"]
        cancelled = threading.Event()
        with self._lock:
            self._cancelled[env.lower()] = cancelled
        mode = _config(manifest).get("mode", "async")
        limit = STARTUP_HEALTH_CHECK_S + INVOCATION_TIMEOUT_S[mode] * plan.templates + 3 * GONE_TIMEOUT_S
        self._put(env, {"proving": {"version": plan.version, "endpoint": plan.endpoint, "activity": plan.activity,
                                    "started_at": now(), "until": time.time() + limit},
                        "failed": None, "reason": None})
        log.info("comfyui-sagemaker: %s: %s", env, plan.activity)
        view: EndpointView = {"name": env, "kind": "sagemaker", "environment": env, "state": "Updating",
                              "endpoint_name": naming.endpoint_name(env, self.owner.store_uri),
                              "version": plan.version, "reason": None, "activity": plan.activity,
                              "updated_at": now()}
        if warning:
            view["warning"] = warning
        self.owner.on_change(view)
        self.owner.in_background(lambda: self._run(manifest, plan, serving, switch, cancelled),
                                  f"sagemaker-proof-{plan.endpoint}")
        return view

    def _run(self, manifest: Manifest, plan: ProofPlan, serving: int | None, switch: Callable[[], None],
             cancelled: threading.Event) -> None:
        env = manifest["name"]
        ours = naming.versioned_name(env, plan.version, self.owner.store_uri)
        try:
            try:
                run, why = self._prove(manifest, plan, cancelled)
            finally:
                self._delete(plan)
            if cancelled.is_set():
                self._clear(env)
                self.owner.remove_version(ours)
                return
            if why is None and run is not None and run["passed"]:
                self._clear(env)
                try:
                    switch()
                except Exception as err:
                    message = err.message if isinstance(err, AwsError) else translate(err, self.owner.region).message
                    self._not_deployed(env, plan, serving, f"its proofs passed, then the update failed: {message}",
                                       run)
                    return
                self.owner.monitor(manifest, naming.endpoint_name(env, self.owner.store_uri))
                return
            if run is not None and not run["passed"]:
                why = summary(run)
            self._not_deployed(env, plan, serving, why or "its proofs did not run", run)
        except Exception as err:  # shown on the endpoint, never lost in a thread; the old version serves on
            message = err.message if isinstance(err, AwsError) else translate(err, self.owner.region).message
            log.error("comfyui-sagemaker: proving version %d of %s failed: %s", plan.version, env, message)
            self._not_deployed(env, plan, serving, f"proving it failed: {message}", None)
        finally:
            self._done(env)

    def _prove(self, manifest: Manifest, plan: ProofPlan,
               cancelled: threading.Event) -> tuple[ProofRun | None, str | None]:
        """(the proof run, None) once the temporary endpoint served the proofs; (None, why) if it never served."""
        from .sagemaker_endpoints import STARTUP_HEALTH_CHECK_S

        if self.owner.describe_endpoint(plan.endpoint) is not None:  # a leftover of a process that died while proving
            self._delete(plan)
        request = self.owner.endpoint_config_request(manifest)
        variant = {**request["ProductionVariants"][0], "InitialInstanceCount": 1}
        self._create_config({**request, "EndpointConfigName": plan.config, "ProductionVariants": [variant]})
        if cancelled.is_set():
            return None, "cancelled"
        self.owner.create_endpoint(plan.endpoint, plan.config, manifest["name"])
        deadline = time.monotonic() + STARTUP_HEALTH_CHECK_S + GONE_TIMEOUT_S
        while True:
            if cancelled.is_set():
                return None, "cancelled"
            d = self.owner.describe_endpoint(plan.endpoint)
            status = d["EndpointStatus"] if d else "Deleted"
            if status == "InService":
                break
            if endpoint_states.of(status).settled or d is None:
                reason = (d or {}).get("FailureReason") or "no reason given"
                return None, f"its temporary endpoint did not start: {status} ({reason})"
            if time.monotonic() > deadline:
                limit = STARTUP_HEALTH_CHECK_S + GONE_TIMEOUT_S
                return None, f"its temporary endpoint was not in service within {limit} s"
            time.sleep(self.owner.poll_interval)
        prover = self.prover()
        if prover is None:
            return None, "its proofs cannot be read"
        invoke = self._invoker(plan.endpoint, manifest)
        return prover.run(manifest["name"], plan.version, invoke), None

    def _invoker(self, endpoint: str, manifest: Manifest) -> Callable[[Invocation], WorkerResult]:
        client = self.owner.aws_client("sagemaker-runtime")
        if _config(manifest).get("mode") == "realtime":
            return lambda body: runtime.invoke_realtime(client, endpoint, body, lambda event: None)
        store, follow = self.owner.store, self.owner.watch.follow
        return lambda body: runtime.invoke_async(client, None, store, self.owner.store_uri, endpoint, body,
                                                 lambda event: None, follow=follow)

    def _create_config(self, request: dict[str, Any]) -> None:
        from botocore.exceptions import ClientError

        try:
            self.owner.sm.create_endpoint_config(**request)
        except ClientError as err:
            if not (_code(err) == "ValidationException" and "already exist" in str(err)):
                raise

    def _delete(self, plan: ProofPlan) -> None:
        """The temporary endpoint and its config, and wait until SageMaker has released its instance; safe to
        call when there is none. Logged, never raised: a leftover is found by teardown (and the next proof)."""
        from botocore.exceptions import BotoCoreError, ClientError

        sm = self.owner.sm
        try:
            try:
                sm.delete_endpoint(EndpointName=plan.endpoint)
            except ClientError as err:
                if _code(err) != "ValidationException":  # "Could not find endpoint": gone already
                    raise
            try:
                sm.delete_endpoint_config(EndpointConfigName=plan.config)
            except ClientError as err:
                if _code(err) != "ValidationException":
                    raise
            if not self.owner.wait_gone(plan.endpoint, GONE_TIMEOUT_S):
                log.error("comfyui-sagemaker: the temporary endpoint %s was not deleted within %d s", plan.endpoint,
                          GONE_TIMEOUT_S)
        except (ClientError, BotoCoreError) as err:
            log.error("comfyui-sagemaker: the temporary endpoint %s could not be deleted (teardown removes it): %s",
                      plan.endpoint, translate(err, self.owner.region).message)

    def _not_deployed(self, env: str, plan: ProofPlan, serving: int | None, why: str, run: ProofRun | None) -> None:
        """The new version's model and config go (as those of an update SageMaker rolled back), then the endpoint
        says why: once it says so, nothing is left to happen."""
        try:
            self.owner.remove_version(naming.versioned_name(env, plan.version, self.owner.store_uri))
        except Exception as err:  # a deploy of that version reuses them; the endpoint's delete and teardown remove them
            log.warning("comfyui-sagemaker: version %d of %s was not removed: %s", plan.version, env, err)
        self._refuse(env, plan.version, serving, why, run)

    def _refuse(self, env: str, version: int, serving: int | None, why: str, run: ProofRun | None) -> None:
        reason = f"version {version} did not deploy ({why}); still serving version {serving}"
        self._put(env, {"proving": None, "failed": run, "reason": reason})
        try:
            d = self.owner.describe_endpoint(naming.endpoint_name(env, self.owner.store_uri))
        except Exception:  # the record says it; the view follows at the next look
            d = None
        view: EndpointView = self.owner.view_of(env, d) if d else {
            "name": env, "kind": "sagemaker", "environment": env, "state": "InService", "version": serving}
        self.owner.on_change({**view, "reason": reason, "proof_failed": run, "activity": None})

    # what the endpoint says

    def view(self, env: str, view: EndpointView) -> EndpointView:
        """`view` (from DescribeEndpoint) with the proofs: those of the serving version, the run that stopped the
        last update, and the proof run under way (state Updating, as a local endpoint's)."""
        store = self.owner.store
        if store is None:
            return view
        version = view.get("version")
        out: EndpointView = {**view, "proofs": kept(store, env, version) if version is not None else None,
                             "proof_failed": None}
        record = self._get(env)
        proving = record.get("proving")
        if proving and proving.get("until", 0) > time.time() and view["state"] == "InService":
            out["state"], out["activity"] = "Updating", proving.get("activity")
        if record.get("failed") is not None or record.get("reason"):
            out["proof_failed"] = record.get("failed")
            out["reason"] = view.get("reason") or record.get("reason")
        return out

    # the record in the store

    def _get(self, env: str) -> ProofRecord:
        try:
            data = json.loads(self.owner.store.get(record_key(env)).data)
            return cast(ProofRecord, data) if isinstance(data, dict) else {}
        except (KeyNotFound, ValueError):
            return {}
        except Exception as err:  # a courtesy, as the warning: the endpoint shows without it
            log.warning("cannot read the proofs of endpoint %s: %s", env, err)
            return {}

    def _put(self, env: str, record: ProofRecord) -> None:
        try:
            self.owner.store.put(record_key(env), json.dumps(record).encode())
        except Exception as err:  # the endpoint still says it in its event; only a later look misses it
            log.warning("cannot record the proofs of endpoint %s: %s", env, err)

    def _clear(self, env: str) -> None:
        try:
            self.owner.store.delete(record_key(env))
        except KeyNotFound:
            pass
        except Exception as err:
            log.warning("cannot clear the proofs of endpoint %s: %s", env, err)

    def begin(self, env: str) -> None:
        """A new deploy starts, before it creates anything: EndpointBusy while this process proves another
        version (its update would follow this one's); else the run that stopped the last one is no longer the
        endpoint's news."""
        with self._lock:
            busy = env.lower() in self._cancelled
        if busy:
            raise EndpointBusy(f"endpoint {env} is proving a new version on a temporary endpoint; deploy again once "
                               "that has ended")
        if self.owner.store is not None and self._get(env):
            self._clear(env)

    # cancel and settle

    def cancel(self, env: str) -> None:
        """The endpoint is deleted or stopped while its update is proven: the proofs stop, and the temporary
        endpoint goes now (an async proof waiting for its result sees its endpoint gone)."""
        with self._lock:
            cancelled = self._cancelled.get(env.lower())
        if cancelled is None:
            return
        cancelled.set()
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.owner.sm.delete_endpoint(EndpointName=naming.proof_endpoint_name(env, self.owner.store_uri))
        except (ClientError, BotoCoreError):  # gone already, or not yet made: the proof run's end deletes it
            pass

    def when_settled(self, env: str, done: Callable[[], None]) -> None:
        """`done()` once the proof run under way (and the update it lets through) has started or stopped; at
        once when none is under way. The environment's lease is held until then."""
        with self._lock:
            if env.lower() in self._cancelled:
                self._settled.setdefault(env.lower(), []).append(done)
                return
        done()

    def _done(self, env: str) -> None:
        with self._lock:
            self._cancelled.pop(env.lower(), None)
            waiting = self._settled.pop(env.lower(), [])
        for done in waiting:
            try:
                done()
            except Exception:
                log.warning("comfyui-sagemaker: a deploy's settle callback failed", exc_info=True)
