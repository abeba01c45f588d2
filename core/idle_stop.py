"""Idle stop: an endpoint that keeps an instance is stopped (the existing Stop) after N minutes without a run.

Which endpoints: a SageMaker endpoint that bills while idle (no autoscaling, or autoscaling min above 0) stops
after `idle_stop_minutes` (DEFAULT_MINUTES when its config does not say; 0: never). An async endpoint with min 0
scales in to no instance by itself, so nothing is stopped there. A local endpoint bills nothing: it stops only
when its config asks (an explicit `idle_stop_minutes`), to give its GPU memory back.

Who decides: the one thing that runs whenever the endpoint runs, so that it works with every ComfyUI closed and
polls nothing while idle. The worker keeps when its last run ended (`Idleness`, in its report as `idle_since`).
A local endpoint's owning ComfyUI reads it in the /status it polls anyway (local/endpoint_idle.py); a SageMaker
worker decides itself (worker/idle_stop.py), asking CloudWatch once, at the deadline, whether the endpoint's
other instances ran anything meanwhile. A CloudWatch alarm cannot stop an endpoint: its actions are SNS, EC2
Auto Scaling, EC2 instance actions, Application Auto Scaling policies, Systems Manager and Lambda
(CloudWatch User Guide, "Using Amazon CloudWatch alarms", Alarm actions); a Lambda would be a second program to
ship and keep equal to this one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

from .records import EndpointConfig

DEFAULT_MINUTES = 60
IDLE = "idle"  # the stopped_by of an idle stop


def minutes(config: EndpointConfig | None) -> int:
    """The idle minutes after which this config's endpoint is stopped; 0: never."""
    if config is None:
        return 0
    explicit = config.get("idle_stop_minutes")
    if config["kind"] == "local":
        return explicit or 0
    scaling = config.get("autoscaling")
    if scaling is not None and scaling["min"] == 0:
        return 0  # it scales in to zero instances: idle, it bills nothing
    return DEFAULT_MINUTES if explicit is None else explicit


def due(limit_minutes: int, idle_since: float | None, now: float) -> bool:
    """Whether an endpoint idle since `idle_since` (epoch seconds; None: running something) is to stop now."""
    return limit_minutes > 0 and idle_since is not None and now - idle_since >= limit_minutes * 60


def stamp(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


def parse(text: object) -> float | None:
    """A report's `idle_since` (ISO 8601) as epoch seconds; None when absent or unreadable (never a stop)."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


class Idleness:
    """A worker's runs: idle since its start or its last run's end, never while one runs. Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._lock = threading.Lock()
        self._running = 0
        self._since: float | None = clock()

    def begin(self) -> None:
        with self._lock:
            self._running += 1
            self._since = None

    def end(self) -> None:
        with self._lock:
            self._running = max(0, self._running - 1)
            if self._running == 0:
                self._since = self._clock()

    def since(self) -> float | None:
        with self._lock:
            return self._since
