"""A SageMaker worker's idle stop (core/idle_stop.py says which endpoints and why the worker decides).

Each instance's worker knows when it last ran something. Once that is `idle_stop_minutes` ago it asks CloudWatch
once whether the endpoint as a whole (its other instances too) ran or queued anything in that window, and if not
it stops its own endpoint with the extension's Stop (aws/sagemaker_endpoints.py: the stopped record in the store,
autoscaling removed, DeleteEndpoint; the EndpointConfig and Model kept for Start). While idle it makes no request
but that one question at the deadline (and one every RECHECK_S while another instance is busy): a minute's tick
in this process is all the waiting costs.

The metrics: AWS/SageMaker `Invocations` (EndpointName, VariantName) for a real-time endpoint; for an async one
`InvocationsProcessed` and `ApproximateBacklogSize` (EndpointName), since a queued request is not idleness
(SageMaker Developer Guide, "Amazon SageMaker AI metrics in Amazon CloudWatch": endpoint invocation metrics and
asynchronous inference endpoint metrics). SageMaker publishes no datapoint for a minute without invocations, so an
empty answer is zero.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from ..core.idle_stop import IDLE, Idleness, due

log = logging.getLogger("comfyui_sagemaker.worker")
TICK_S = 60.0
RECHECK_S = 300.0  # another instance ran something: ask again this much later
NAMESPACE = "AWS/SageMaker"


def metric_queries(endpoint: str, mode: str, period: int) -> list[dict[str, Any]]:
    """GetMetricData's queries: whatever says the endpoint ran or holds a run in the window (one period)."""
    by_endpoint = [{"Name": "EndpointName", "Value": endpoint}]
    if mode == "realtime":
        wanted = [("invocations", "Invocations", [*by_endpoint, {"Name": "VariantName", "Value": "AllTraffic"}],
                   "Sum")]
    else:
        wanted = [("processed", "InvocationsProcessed", by_endpoint, "Sum"),
                  ("backlog", "ApproximateBacklogSize", by_endpoint, "Maximum")]
    return [{"Id": qid, "ReturnData": True, "MetricStat": {
        "Metric": {"Namespace": NAMESPACE, "MetricName": name, "Dimensions": dimensions},
        "Period": period, "Stat": stat}} for qid, name, dimensions, stat in wanted]


def endpoint_ran(cloudwatch: Any, endpoint: str, mode: str, minutes: int, now: float) -> bool:
    """Whether any instance of `endpoint` ran or queued something in the last `minutes` (one GetMetricData)."""
    end = datetime.fromtimestamp(now, timezone.utc)
    start = datetime.fromtimestamp(now - minutes * 60, timezone.utc)
    answer = cloudwatch.get_metric_data(MetricDataQueries=metric_queries(endpoint, mode, minutes * 60),
                                        StartTime=start, EndTime=end)
    return any(value > 0 for result in answer["MetricDataResults"] for value in result.get("Values", []))


class IdleStop:
    """`ran(minutes, now)`: whether the endpoint ran anything meanwhile; `stop()`: the endpoint's Stop."""

    def __init__(self, idleness: Idleness, minutes: int, ran: Callable[[int, float], bool],
                 stop: Callable[[], object], clock: Callable[[], float] = time.time):
        self.idleness = idleness
        self.minutes = minutes
        self.ran = ran
        self.stop = stop
        self.clock = clock
        self.stopped = False
        self._not_before = 0.0

    def check(self) -> bool:
        """One look (blocking: AWS calls at the deadline); True once it has stopped the endpoint."""
        now = self.clock()
        if self.stopped or now < self._not_before or not due(self.minutes, self.idleness.since(), now):
            return self.stopped
        if self.ran(self.minutes, now):
            self._not_before = now + RECHECK_S
            return False
        log.info("idle for %d minutes: stopping the endpoint (idle_stop_minutes)", self.minutes)
        self.stop()
        self.stopped = True
        return True

    async def run(self) -> None:
        while not self.stopped:
            await asyncio.sleep(TICK_S)
            try:
                await asyncio.to_thread(self.check)
            except Exception as err:  # AWS refused or unreachable: said in the log, asked again next time
                log.warning("idle stop: %s", err)
                self._not_before = self.clock() + RECHECK_S


def for_sagemaker(idleness: Idleness, minutes: int, store: Any, store_uri: str, environment: str, mode: str,
                  endpoints: Any = None, clock: Callable[[], float] = time.time) -> IdleStop:
    """The idle stop of this worker's SageMaker endpoint, with the extension's own Stop (`endpoints`: the
    provider, made here unless given; imported here: a local endpoint's worker never loads the AWS code)."""
    from ..aws import naming
    from ..aws.s3_store import S3Store
    from ..aws.sagemaker_endpoints import SageMakerEndpoints

    if endpoints is None:
        region = store.region if isinstance(store, S3Store) else ""
        endpoints = SageMakerEndpoints(store_uri, "", "", region, store=store)
    endpoint = naming.endpoint_name(environment, store_uri)
    return IdleStop(idleness, minutes, lambda m, now: endpoint_ran(endpoints.cloudwatch, endpoint, mode, m, now),
                    lambda: endpoints.stop(environment, by=IDLE), clock)
