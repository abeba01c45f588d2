"""Autoscaling of an endpoint's variant (Application Auto Scaling + a CloudWatch alarm).

- real-time: target tracking on SageMakerVariantInvocationsPerInstance;
- async: target tracking on ApproximateBacklogSizePerInstance; with min 0,
  also a step scaling policy driven by an alarm on HasBacklogWithoutCapacity,
  so the first request after scaling in to zero brings an instance back.
"""

from __future__ import annotations

from typing import Any

from . import naming

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
TRACKING_POLICY = "comfyui-sagemaker-target-tracking"
STEP_POLICY = "comfyui-sagemaker-scale-out-from-zero"
INVOCATIONS_PER_INSTANCE = 5.0  # real-time: a few concurrent prompts per GPU
BACKLOG_PER_INSTANCE = 2.0  # async: queued requests per instance before adding one


class Autoscaling:
    def __init__(self, aas: Any, cloudwatch: Any):
        self.aas = aas
        self.cw = cloudwatch

    def apply(self, endpoint: str, mode: str, minimum: int, maximum: int) -> None:
        rid = naming.resource_id(endpoint)
        self.aas.register_scalable_target(ServiceNamespace=NAMESPACE, ResourceId=rid, ScalableDimension=DIMENSION,
                                          MinCapacity=minimum, MaxCapacity=maximum)
        if mode == "realtime":
            metric = {"PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}}
            target = INVOCATIONS_PER_INSTANCE
        else:
            metric = {"CustomizedMetricSpecification": {
                "MetricName": "ApproximateBacklogSizePerInstance", "Namespace": "AWS/SageMaker",
                "Dimensions": [{"Name": "EndpointName", "Value": endpoint}], "Statistic": "Average"}}
            target = BACKLOG_PER_INSTANCE
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
