"""How an update replaces an endpoint's fleet without a second full fleet, and rolls itself back.

UpdateEndpoint without a DeploymentConfig brings a complete new fleet up before it drops the old one, and
without RetainAllVariantProperties it resets the instance count to the new config's (the API's default is
false), so an endpoint autoscaling had taken to zero is billed again after every publish. Every update the
extension sends therefore carries (SageMaker API Reference, "UpdateEndpoint", "VariantProperty",
"DeploymentConfig", "RollingUpdatePolicy", "BlueGreenUpdatePolicy", "CapacitySize"; Developer Guide,
"Deployment guardrails", "Use rolling deployments", "Exclusions", "Auto-Rollback Configuration and
Monitoring"):

- RetainAllVariantProperties: the running instance count is kept. DesiredInstanceCount is excluded (the
  new config's InitialInstanceCount applies) only when the new version has no autoscaling (its count is the
  designer's explicit always-on choice) or the running count lies outside its new min..max. The instance
  type is not a variant property: it always comes from the new config. DesiredWeight (one variant) and
  DataCaptureConfig (none) are kept as they are.
- A rolling update when the fleet it deploys has 2 instances or more: MaximumBatchSize "must be between 5%
  to 50% of the variant's total instance count", so batches of the smallest allowed size (1 instance up to
  20, 5% above), and a rollback in batches of the same size (its default, 100%, would bring the whole old
  fleet up at once). At its peak the update runs the fleet plus one batch.
- Blue/green, all at once, when the fleet has 0 or 1 instance: a rolling batch of 1 would be 100% of it, and
  a canary smaller than one instance does not exist. The new fleet is as large as the old (0 or 1), so an
  endpoint scaled to zero is updated with no instance at all.
- Every endpoint here can have both: the Exclusions page names Marketplace containers and Inf1 instances
  (both refused at publish, core/instance_families.py), and for rolling updates serverless and multi-variant
  endpoints (the extension makes neither). Asynchronous endpoints are not excluded.
- AutoRollbackConfiguration on one alarm the extension puts before each update (aws/naming.py's
  errors_alarm_name, deleted with the endpoint's other alarms in aws/autoscaling.py's remove): the variant's
  Invocation5XXErrors, which real-time and asynchronous endpoints both publish (Developer Guide, "Alarms and
  logs for tracking metrics from asynchronous endpoints", Common Endpoint Metrics: 1 per 5xx answer, else
  0). The worker answers a failed run with 200 (400 for a prompt it refuses), so a 5xx is the worker itself
  failing, not an artist's workflow. SageMaker watches it during each batch's (or the new fleet's) baking
  period and rolls back by itself; the execution role may read it (cloudwatch:DescribeAlarms, as the
  Auto-Rollback page asks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..core.records import EndpointConfig
from . import naming

BAKE_S = 300  # each batch, or the new fleet, is watched this long before the old instances go
ALARM_PERIOD_S = 60  # Invocation5XXErrors is a one-minute metric
ALARM_EVALUATION_PERIODS = 3
ALARM_DATAPOINTS = 2  # 2 of 3 minutes: one bad minute (a restart) is not a broken version
ALARM_ERROR_RATE = 0.25  # the Average of a 0/1 metric is the share of invocations answered 5xx
MIN_BATCH_PERCENT = 5  # RollingUpdatePolicy.MaximumBatchSize: "between 5% to 50%" of the fleet
TIMEOUT_MIN_S, TIMEOUT_MAX_S = 600, 28800  # MaximumExecutionTimeoutInSeconds' valid range


@dataclass(frozen=True)
class Plan:
    """One update: what UpdateEndpoint carries, and what it needs of the instance type's quota."""

    deployment: dict[str, Any]
    exclude: list[str] = field(default_factory=list)  # ExcludeRetainedVariantProperties
    fleet: int = 0  # the instances the new version runs on once the update is done
    peak: int = 0  # instances of the new config's type running at once at the update's busiest moment
    detail: str = ""  # how `peak` is made up, in words

    @property
    def kind(self) -> str:
        return "rolling" if "RollingUpdatePolicy" in self.deployment else "blue/green"


def _new_fleet(current: int, cfg: EndpointConfig) -> tuple[int, list[str]]:
    """The instance count the update deploys, and the variant properties the new config overrides."""
    scaling = cfg.get("autoscaling")
    if scaling is None or not scaling["min"] <= current <= scaling["max"]:
        return cfg["initial_count"], ["DesiredInstanceCount"]
    return current, []


def _timeout(steps: int, startup_s: int) -> int:
    """Each step is a cold start (up to the container's startup health check) and a baking period."""
    return max(TIMEOUT_MIN_S, min(TIMEOUT_MAX_S, steps * (startup_s + BAKE_S)))


def plan(endpoint: str, current: int, cfg: EndpointConfig, same_type: bool, startup_s: int) -> Plan:
    """The update of an endpoint running `current` instances to a version with endpoint config `cfg`
    (`same_type`: on the instance type it runs now)."""
    fleet, exclude = _new_fleet(current, cfg)
    rollback = {"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": naming.errors_alarm_name(endpoint)}]}}
    if fleet >= 2:
        batch = max(1, math.ceil(fleet * MIN_BATCH_PERCENT / 100))
        size = {"Type": "INSTANCE_COUNT", "Value": batch}
        deployment = {"RollingUpdatePolicy": {
            "MaximumBatchSize": size, "WaitIntervalInSeconds": BAKE_S,
            "MaximumExecutionTimeoutInSeconds": _timeout(math.ceil(fleet / batch), startup_s),
            "RollbackMaximumBatchSize": size}, **rollback}
        if same_type:
            peak = max(current, fleet) + batch
            detail = f"{max(current, fleet)} running and a rolling batch of {batch}"
        else:
            peak, detail = fleet, f"the new fleet of {fleet}, in batches of {batch}"
    else:
        deployment = {"BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": BAKE_S},
            "TerminationWaitInSeconds": 0, "MaximumExecutionTimeoutInSeconds": _timeout(1, startup_s)},
            **rollback}
        if same_type:
            peak, detail = current + fleet, f"{current} running and a new fleet of {fleet} beside it"
        else:
            peak, detail = fleet, f"a new fleet of {fleet}"
    return Plan(deployment, exclude, fleet, peak, detail)


def update_request(endpoint: str, config_name: str, update: Plan) -> dict[str, Any]:
    request: dict[str, Any] = {"EndpointName": endpoint, "EndpointConfigName": config_name,
                               "RetainAllVariantProperties": True, "DeploymentConfig": update.deployment}
    if update.exclude:
        request["ExcludeRetainedVariantProperties"] = [{"VariantPropertyType": p} for p in update.exclude]
    return request


def apply(sm: Any, cw: Any, scaling: Any, endpoint: str, config_name: str, update: Plan, new_type: bool) -> None:
    """Send the update: the alarm SageMaker watches first, and `scaling` (aws/autoscaling.py) removed first when
    the instance type changes (`new_type`): AWS refuses that while autoscaling is registered on the variant."""
    if new_type:
        scaling.remove(endpoint)
    put_errors_alarm(cw, endpoint)
    sm.update_endpoint(**update_request(endpoint, config_name, update))


def put_errors_alarm(cw: Any, endpoint: str) -> str:
    """The alarm SageMaker watches during an update (put again before each: PutMetricAlarm replaces it)."""
    name = naming.errors_alarm_name(endpoint)
    cw.put_metric_alarm(
        AlarmName=name, AlarmDescription="comfyui-sagemaker: SageMaker rolls an update back when this alarms",
        Namespace="AWS/SageMaker", MetricName="Invocation5XXErrors",
        Dimensions=[{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": naming.VARIANT}],
        Statistic="Average", Period=ALARM_PERIOD_S, EvaluationPeriods=ALARM_EVALUATION_PERIODS,
        DatapointsToAlarm=ALARM_DATAPOINTS, Threshold=ALARM_ERROR_RATE, ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching")  # no invocations (an idle endpoint) is no error
    return name


def rollback_alarm(cw: Any, described: dict) -> str | None:
    """The alarm that made SageMaker roll the last update back, or None: one the update named
    (DescribeEndpoint's LastDeploymentConfig) that its FailureReason names or that is in ALARM now."""
    config = described.get("LastDeploymentConfig") or {}
    names = [a["AlarmName"] for a in (config.get("AutoRollbackConfiguration") or {}).get("Alarms", [])]
    reason = described.get("FailureReason") or ""
    for name in names:
        if name in reason:
            return name
    if not names:
        return None
    alarms = cw.describe_alarms(AlarmNames=names).get("MetricAlarms", [])
    return next((a["AlarmName"] for a in alarms if a.get("StateValue") == "ALARM"), None)
