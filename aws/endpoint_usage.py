"""SageMaker endpoints' instance-hours from CloudWatch, read when someone asks what they cost (core/costs.py).

Nothing in the project records when SageMaker's autoscaling adds or removes instances, and DescribeEndpoint says
only the count now; CloudWatch does: every instance of an endpoint publishes its utilization metrics
(`/aws/sagemaker/Endpoints`: CPUUtilization, by EndpointName and VariantName) once a minute while it runs
("Monitor Amazon SageMaker AI with Amazon CloudWatch", SageMaker endpoint instance metrics; 1-hour data is kept
455 days: CloudWatch concepts, "Metrics retention"). So the SampleCount of CPUUtilization over an hour is the
instance-minutes of that hour, whatever the count did inside it. One GetMetricData call (IAM action
cloudwatch:GetMetricData, on "*": the action has no resource type) reads up to 500 endpoints' hours.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ..core.costs import Span
from ..core.records import EndpointView
from . import naming

NAMESPACE = "/aws/sagemaker/Endpoints"
METRIC = "CPUUtilization"
PERIOD_S = 3600
SAMPLES_PER_INSTANCE_HOUR = 60  # one datapoint per instance per minute
MAX_QUERIES = 500  # GetMetricData's limit per call (API reference, MetricDataQueries)


def query(index: int, endpoint_name: str) -> dict[str, Any]:
    # An Id starts with a lowercase letter (API reference, MetricDataQuery.Id).
    return {"Id": f"e{index}", "ReturnData": True,
            "MetricStat": {"Metric": {"Namespace": NAMESPACE, "MetricName": METRIC,
                                      "Dimensions": [{"Name": "EndpointName", "Value": endpoint_name},
                                                     {"Name": "VariantName", "Value": naming.VARIANT}]},
                           "Period": PERIOD_S, "Stat": "SampleCount"}}


def spans(timestamps: list[datetime], values: list[float], end: datetime) -> list[Span]:
    """Hourly sample counts as spans: the hour holding `end` (still going) ends there, its instance-hours kept."""
    out = []
    for t, samples in zip(timestamps, values, strict=True):
        stop = min(t + timedelta(seconds=PERIOD_S), end)
        hours = (stop - t).total_seconds() / 3600
        if samples > 0 and hours > 0:
            out.append(Span(t, stop, samples / SAMPLES_PER_INSTANCE_HOUR / hours))
    return sorted(out, key=lambda s: s.start)


def usage(cloudwatch: Any, endpoints: list[EndpointView], start: datetime, end: datetime) -> dict[str, list[Span]]:
    """By environment name, the instances each endpoint ran between `start` and `end` (botocore's errors raised:
    the caller translates them)."""
    named = [(e["name"], e["endpoint_name"]) for e in endpoints if e.get("endpoint_name")]
    found: dict[str, list[Span]] = {name: [] for name, _ in named}
    start = start.replace(minute=0, second=0, microsecond=0)  # whole hours: the buckets are the hours of the clock
    for first in range(0, len(named), MAX_QUERIES):
        chunk = named[first:first + MAX_QUERIES]
        queries = [query(i, endpoint_name) for i, (_, endpoint_name) in enumerate(chunk)]
        points: dict[str, tuple[list[datetime], list[float]]] = {q["Id"]: ([], []) for q in queries}
        args: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": start, "EndTime": end,
                                "ScanBy": "TimestampAscending"}
        while True:
            answer = cloudwatch.get_metric_data(**args)
            for result in answer.get("MetricDataResults", []):
                if result["Id"] in points:
                    points[result["Id"]][0].extend(result.get("Timestamps", []))
                    points[result["Id"]][1].extend(result.get("Values", []))
            if not answer.get("NextToken"):
                break
            args = {**args, "NextToken": answer["NextToken"]}
        for i, (name, _) in enumerate(chunk):
            found[name] = spans(*points[f"e{i}"], end)
    return found
