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
        if mode == "realtime":
            metric = {"PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}}
            target = targets(gpus)["realtime"]
        else:
            metric = {"CustomizedMetricSpecification": {
                "MetricName": "ApproximateBacklogSizePerInstance", "Namespace": "AWS/SageMaker",
                "Dimensions": [{"Name": "EndpointName", "Value": endpoint}], "Statistic": "Average"}}
            target = targets(gpus)["async"]
        self.aas.put_scaling_policy(
            PolicyName=TRACKING_POLICY, ServiceNamespace=NAMESPACE, ResourceId=rid, ScalableDimension=DIMENSION,
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={"TargetValue": target, **metric,
                                                      "ScaleInCooldown": 300, "ScaleOutCooldown": 60})
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
                Statistic="Average", Period=60, EvaluationPeriods=2, DatapointsToAlarm=2, Threshold=1,
                ComparisonOperator="GreaterThanOrEqualToThreshold", TreatMissingData="missing",
                AlarmActions=[policy["PolicyARN"]])

    def remove(self, endpoint: str) -> None:
        """Policies, target and alarm; whatever is already gone is skipped."""
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
            self.cw.delete_alarms(AlarmNames=[naming.alarm_name(endpoint)])
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ResourceNotFound":
                raise
