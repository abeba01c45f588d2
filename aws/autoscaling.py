"""Autoscaling of an endpoint's variant (Application Auto Scaling + a CloudWatch alarm).

- real-time: target tracking on SageMakerVariantInvocationsPerInstance (AWS: "the average number of
  times per minute that each instance for a variant is invoked");
- async: target tracking on ApproximateBacklogSizePerInstance (AWS: the number of items in the queue,
  being processed or yet to be, divided by the number of instances); with min 0,
  also a step scaling policy driven by an alarm on HasBacklogWithoutCapacity,
  so the first request after scaling in to zero brings an instance back.

Targets are per GPU and multiplied by the instance's GPUs (core/instance_families.py):
the worker runs one ComfyUI per GPU, so an instance with 4 GPUs does the work of 4 and should carry 4
times the backlog (or invocations) before another instance is added.

Scale-in of an async endpoint, tuned for the fewest idle (billed) minutes after the last run: the target
tracking policy only scales out (DisableScaleIn); a step scaling policy sets the count to min once nothing
is queued or running (ApproximateBacklogSize, the endpoint's, under 0.5) for IDLE_MINUTES one-minute
datapoints. Sources: Application Auto Scaling User Guide, "How target tracking scaling for Application Auto
Scaling works" (the policy's own alarms are managed by AWS and cannot be changed; it scales in
conservatively, only after the metric has stayed well under the target for a sustained time: the 15
one-minute datapoints that left every burst with 15+ idle minutes) and "Step scaling policies"
(ExactCapacity; MetricIntervalUpperBound 0 below the threshold is inclusive); SageMaker AI Developer Guide,
"Autoscale an asynchronous endpoint" (ApproximateBacklogSize, HasBacklogWithoutCapacity, the scale-out-
from-zero step policy) and "Monitor with CloudWatch" (async metrics are one-minute).
"""

from __future__ import annotations

from typing import Any

from . import naming

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
TRACKING_POLICY = "comfyui-sagemaker-target-tracking"
STEP_POLICY = "comfyui-sagemaker-scale-out-from-zero"
INVOCATIONS_PER_GPU = 5.0  # real-time: invocations per minute per GPU (a few prompts of ~10 s each)
BACKLOG_PER_GPU = 2.0  # async: requests per GPU (one running, one waiting) before adding an instance
IDLE_POLICY = "comfyui-sagemaker-scale-in-when-idle"
# An artist's pause between two runs (look at the result, change the prompt) is mostly under 5 minutes; a
# cold start makes the next run wait about 10 (image pull, ComfyUI start). 5 idle minutes, then about 1-2
# of CloudWatch's delay, is what an endpoint bills after its last run (it was 15 + 1-2, plus the 300 s
# cooldown when several instances stepped down one by one).
IDLE_MINUTES = 5
# A request waiting with no instance: HasBacklogWithoutCapacity is 1 only then, so one datapoint is no
# noise, and each minute more would be a minute more of the artist's wait on a cold start.
SCALE_OUT_MINUTES = 1


def targets(gpus: int) -> dict[str, float]:
    """The target tracking values for an instance with `gpus` GPUs, per mode."""
    gpus = max(1, gpus)
    return {"realtime": INVOCATIONS_PER_GPU * gpus, "async": BACKLOG_PER_GPU * gpus}


class Autoscaling:
    def __init__(self, aas: Any, cloudwatch: Any):
        self.aas = aas
        self.cw = cloudwatch

    def apply(self, endpoint: str, mode: str, minimum: int, maximum: int, gpus: int = 1) -> None:
        rid = naming.resource_id(endpoint)
        self.aas.register_scalable_target(ServiceNamespace=NAMESPACE, ResourceId=rid, ScalableDimension=DIMENSION,
                                          MinCapacity=minimum, MaxCapacity=maximum)
        metric: dict[str, Any]
        scale_in: dict[str, Any]
        if mode == "realtime":
            metric = {"PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}}
            target = targets(gpus)["realtime"]
            scale_in = {"ScaleInCooldown": 300}  # no backlog to watch: target tracking scales in
        else:
            metric = {"CustomizedMetricSpecification": {
                "MetricName": "ApproximateBacklogSizePerInstance", "Namespace": "AWS/SageMaker",
                "Dimensions": [{"Name": "EndpointName", "Value": endpoint}], "Statistic": "Average"}}
            target = targets(gpus)["async"]
            scale_in = {"DisableScaleIn": True}  # the idle policy below scales in, sooner
        self.aas.put_scaling_policy(
            PolicyName=TRACKING_POLICY, ServiceNamespace=NAMESPACE, ResourceId=rid, ScalableDimension=DIMENSION,
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={"TargetValue": target, **metric, **scale_in,
                                                      "ScaleOutCooldown": 60})
        if mode == "async":
            self._scale_in_when_idle(endpoint, rid, minimum)
        if mode == "async" and minimum == 0:
            policy = self.aas.put_scaling_policy(
                PolicyName=STEP_POLICY, ServiceNamespace=NAMESPACE, ResourceId=rid, ScalableDimension=DIMENSION,
                PolicyType="StepScaling",
                StepScalingPolicyConfiguration={
                    "AdjustmentType": "ChangeInCapacity", "MetricAggregationType": "Maximum", "Cooldown": 300,
                    "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]})
            self.cw.put_metric_alarm(
                AlarmName=naming.alarm_name(endpoint), MetricName="HasBacklogWithoutCapacity",
                Namespace="AWS/SageMaker", Dimensions=[{"Name": "EndpointName", "Value": endpoint}],
                Statistic="Average", Period=60, EvaluationPeriods=SCALE_OUT_MINUTES,
                DatapointsToAlarm=SCALE_OUT_MINUTES, Threshold=1,
                ComparisonOperator="GreaterThanOrEqualToThreshold", TreatMissingData="missing",
                AlarmActions=[policy["PolicyARN"]])

    def _scale_in_when_idle(self, endpoint: str, rid: str, minimum: int) -> None:
        """To `minimum` at once when nothing has been queued or running for IDLE_MINUTES."""
        policy = self.aas.put_scaling_policy(
            PolicyName=IDLE_POLICY, ServiceNamespace=NAMESPACE, ResourceId=rid, ScalableDimension=DIMENSION,
            PolicyType="StepScaling",
            StepScalingPolicyConfiguration={
                "AdjustmentType": "ExactCapacity", "MetricAggregationType": "Maximum", "Cooldown": 60,
                "StepAdjustments": [{"MetricIntervalUpperBound": 0, "ScalingAdjustment": minimum}]})
        # No datapoint counts as idle ("breaching"): a backlog, running work included, is always reported,
        # while an idle endpoint may report nothing.
        self.cw.put_metric_alarm(
            AlarmName=naming.idle_alarm_name(endpoint), MetricName="ApproximateBacklogSize",
            Namespace="AWS/SageMaker", Dimensions=[{"Name": "EndpointName", "Value": endpoint}],
            Statistic="Maximum", Period=60, EvaluationPeriods=IDLE_MINUTES, DatapointsToAlarm=IDLE_MINUTES,
            Threshold=0.5, ComparisonOperator="LessThanThreshold", TreatMissingData="breaching",
            AlarmActions=[policy["PolicyARN"]])

    def remove(self, endpoint: str) -> None:
        """Policies, target and the endpoint's alarms (the update guardrails' one too); whatever is already gone
        is skipped."""
        from botocore.exceptions import ClientError

        rid = naming.resource_id(endpoint)
        policies = self.aas.describe_scaling_policies(ServiceNamespace=NAMESPACE, ResourceId=rid,
                                                      ScalableDimension=DIMENSION)["ScalingPolicies"]
        for p in policies:
            self.aas.delete_scaling_policy(PolicyName=p["PolicyName"], ServiceNamespace=NAMESPACE, ResourceId=rid,
                                           ScalableDimension=DIMENSION)
        targets = self.aas.describe_scalable_targets(ServiceNamespace=NAMESPACE, ResourceIds=[rid],
                                                     ScalableDimension=DIMENSION)["ScalableTargets"]
        if targets:
            self.aas.deregister_scalable_target(ServiceNamespace=NAMESPACE, ResourceId=rid,
                                                ScalableDimension=DIMENSION)
        try:
            self.cw.delete_alarms(AlarmNames=naming.alarm_names(endpoint))
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ResourceNotFound":
                raise
