"""What is running and what it costs, computed when someone asks (GET /sagemaker/costs, `comfyui-sagemaker
costs`, the sidebar's Costs section): nothing here polls the store or AWS on its own, and an answer is kept
CACHE_S seconds so a page that refreshes does not ask again.

An endpoint's cost is its instance-hours × its instance type's hourly price (core/prices.py). Its instance-hours
come from its own history (`Endpoints.usage`: SageMaker's CloudWatch metrics, aws/endpoint_usage.py); where the
provider keeps none, they are estimated from the endpoint as it is now (its instances since it was last created
or changed), and said so (`history: "estimate"`). Local endpoints run on this machine and cost 0. Storage is the
store's bytes by top-level prefix (outputs are blobs: they count under `blobs/`) at the S3 storage rate; a folder
store costs 0.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from typing_extensions import TypedDict

from . import prices
from .endpoints import READY_STATES
from .records import EndpointView
from .store import Store

DAYS = 30  # the plot's span
CACHE_S = 60.0
RECENT_RUNS = 50  # how many of the newest runs are read to find each endpoint's last one (a page: 1 LIST)
GIB = 2**30  # S3 bills storage by GB-month of 2^30 bytes
ACTIVE_RUNS = ("queued", "running")


@dataclass(frozen=True)
class Span:
    """`instances` (an average: may be fractional) ran from `start` to `end`."""

    start: datetime
    end: datetime
    instances: float


def instance_hours(spans: list[Span], start: datetime, end: datetime) -> float:
    """The instance-hours of `spans` that fall between `start` and `end`."""
    total = 0.0
    for s in spans:
        overlap = (min(s.end, end) - max(s.start, start)).total_seconds()
        if overlap > 0:
            total += s.instances * overlap / 3600
    return total


def day_start(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def month_start(moment: datetime) -> datetime:
    return day_start(moment).replace(day=1)


def history_start(now: datetime) -> datetime:
    """Where the history asked for begins: the plot's 30 days or the month's first, whichever is earlier."""
    return min(day_start(now) - timedelta(days=DAYS - 1), month_start(now))


def _parse_time(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def instances_now(view: EndpointView) -> int:
    """Instances the endpoint has now: SageMaker's current count; a serving local endpoint is one worker."""
    if view["state"] not in READY_STATES:
        return int(view.get("instances") or 0) if view["kind"] == "sagemaker" else 0
    return int(view.get("instances", 1) if view["kind"] == "sagemaker" else 1)


def estimate(view: EndpointView, now: datetime) -> list[Span]:
    """No history kept: the instances it has now, since it was last created or changed (its view's times)."""
    count = instances_now(view)
    since = _parse_time(view.get("updated_at")) or _parse_time(view.get("created_at"))
    if not count or since is None or since >= now:
        return []
    return [Span(since, now, float(count))]


History = Literal["cloudwatch", "estimate", "none"]


class DayCost(TypedDict):
    day: str  # YYYY-MM-DD, UTC
    instance_hours: float
    cost: float | None  # None: some endpoint's price is unknown


class EndpointCost(TypedDict):
    name: str
    kind: str
    state: str
    instance_type: str | None
    instances: int  # now
    hourly: float | None  # what it costs per hour now; None: price unknown
    instance_hours_today: float
    instance_hours_month: float
    cost_today: float | None
    cost_month: float | None
    history: History  # where the instance-hours come from
    last_run_at: str | None  # the newest run on it, among the store's RECENT_RUNS newest
    idle_s: float | None  # since that run ended; 0 while one is queued or running; None: no recent run
    days: list[DayCost]


class PrefixCost(TypedDict):
    prefix: str
    objects: int
    bytes: int
    monthly: float | None


class StorageCost(TypedDict):
    kind: str  # folder | s3
    bytes: int
    monthly: float | None
    prefixes: list[PrefixCost]


class Totals(TypedDict):
    hourly: float | None
    today: float | None
    month: float | None
    monthly_storage: float | None


class Series(TypedDict):
    """All endpoints' instances over the plot's span, one value per hour from `start`."""

    start: str
    step_s: int
    instances: list[float]


class CostsReport(TypedDict):
    as_of: str
    region: str
    prices_as_of: str | None
    endpoints: list[EndpointCost]
    storage: StorageCost | None
    totals: Totals
    days: list[DayCost]
    series: Series
    unavailable: list[dict[str, str]]  # {kind, reason}: a provider, the store or the metrics that cannot answer


def _sum(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else round(sum(v for v in values if v is not None), 4)


def _times(a: float | None, b: float) -> float | None:
    return None if a is None else round(a * b, 4)


def storage_cost(kind: str, region: str, sizes: dict[str, int]) -> StorageCost:
    """`sizes` (key -> bytes) summed by top-level prefix, at the S3 storage rate (a folder store costs 0)."""
    rate = 0.0 if kind != "s3" else prices.stack_rate(region, "s3_gb_month")
    by: dict[str, list[int]] = {}
    for key, size in sizes.items():
        prefix = key.split("/", 1)[0] + "/" if "/" in key else key
        count = by.setdefault(prefix, [0, 0])
        count[0] += 1
        count[1] += size
    rows = [PrefixCost(prefix=p, objects=n, bytes=b, monthly=_times(rate, b / GIB)) for p, (n, b) in sorted(by.items())]
    total = sum(r["bytes"] for r in rows)
    return StorageCost(kind=kind, bytes=total, monthly=_times(rate, total / GIB), prefixes=rows)


def recent_runs(store: Store, limit: int) -> list[dict[str, Any]]:
    """The store's `limit` newest runs (one LIST of the index, a GET per record): what says when each endpoint
    last ran. Read from the records themselves: no ComfyUI needed (the CLI's costs)."""
    from concurrent.futures import ThreadPoolExecutor

    from .errors import ExecutionCorrupt
    from .execution_records import INDEX, ExecutionRecords

    records = ExecutionRecords(store)
    ids, _ = records.page(f"{INDEX}all/", None, None, limit, None)

    def read(execution_id: str) -> dict[str, Any] | None:
        try:
            got = records.read(execution_id)
        except ExecutionCorrupt:  # reported where it is read; it says nothing of when an endpoint ran
            return None
        return dict(got[0]) if got else None

    with ThreadPoolExecutor(max_workers=1 if store.kind == "folder" else 16) as pool:
        return [r for r in pool.map(read, ids) if r is not None]


class Costs:
    """The costs report of one configuration's endpoints and store. `endpoints` lists views (and providers that
    cannot answer) and gives their history; `recent_runs` the newest runs' records (environment, state,
    created_at, finished_at); `sizes` the store's key -> bytes; `clock` now (tests: a fake)."""

    def __init__(self, region: str, store_kind: str,
                 list_endpoints: Callable[[], tuple[list[EndpointView], list[dict[str, str]]]],
                 usage: Callable[[list[EndpointView], datetime, datetime], dict[str, list[Span]]],
                 recent_runs: Callable[[int], list[dict[str, Any]]], sizes: Callable[[], dict[str, int]],
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 monotonic: Callable[[], float] = time.monotonic):
        self.region = region
        self.store_kind = store_kind
        self._list = list_endpoints
        self._usage = usage
        self._recent_runs = recent_runs
        self._sizes = sizes
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._cached: tuple[float, CostsReport] | None = None

    def report(self, fresh: bool = False) -> CostsReport:
        """The report, computed now unless one was computed less than CACHE_S seconds ago (`fresh`: now)."""
        with self._lock:
            if not fresh and self._cached and self._monotonic() - self._cached[0] < CACHE_S:
                return self._cached[1]
            made = self._compute()
            self._cached = (self._monotonic(), made)
            return made

    def _compute(self) -> CostsReport:
        from .errors import SageMakerError

        now = self._clock()
        start = history_start(now)
        views, unavailable = self._list()
        unavailable = list(unavailable)
        try:
            history = self._usage(views, start, now)
        except SageMakerError as err:  # metrics refused or unreachable: estimated, and said why
            history = {}
            unavailable.append({"kind": "metrics", "reason": err.message})
        try:
            runs = self._recent_runs(RECENT_RUNS)
        except SageMakerError as err:
            runs = []
            unavailable.append({"kind": "executions", "reason": err.message})
        try:
            storage: StorageCost | None = storage_cost(self.store_kind, self.region, self._sizes())
        except SageMakerError as err:
            storage = None
            unavailable.append({"kind": "store", "reason": err.message})
        day_starts = [day_start(now) - timedelta(days=d) for d in range(DAYS - 1, -1, -1)]
        endpoints = [self._endpoint(v, history, runs, now, day_starts) for v in views]
        days = [DayCost(day=d.date().isoformat(),
                        instance_hours=round(sum(e["days"][i]["instance_hours"] for e in endpoints), 4),
                        cost=_sum([e["days"][i]["cost"] for e in endpoints]))
                for i, d in enumerate(day_starts)]
        spans = [s for v in views for s in self._spans(v, history, now)]
        hours = int((now - day_starts[0]).total_seconds() // 3600) + 1
        series = Series(start=day_starts[0].isoformat(), step_s=3600, instances=[
            round(instance_hours(spans, day_starts[0] + timedelta(hours=h), day_starts[0] + timedelta(hours=h + 1)), 3)
            for h in range(hours)])
        totals = Totals(hourly=_sum([e["hourly"] for e in endpoints]), today=_sum([e["cost_today"] for e in endpoints]),
                        month=_sum([e["cost_month"] for e in endpoints]),
                        monthly_storage=storage["monthly"] if storage else None)
        return CostsReport(as_of=now.isoformat(), region=self.region, prices_as_of=prices.table().as_of,
                           endpoints=endpoints, storage=storage, totals=totals, days=days, series=series,
                           unavailable=unavailable)

    def _spans(self, view: EndpointView, history: dict[str, list[Span]], now: datetime) -> list[Span]:
        if view["kind"] == "sagemaker" and view["name"] in history:
            return history[view["name"]]
        return estimate(view, now)

    def _endpoint(self, view: EndpointView, history: dict[str, list[Span]], runs: list[dict[str, Any]],
                  now: datetime, day_starts: list[datetime]) -> EndpointCost:
        spans = self._spans(view, history, now)
        measured = view["kind"] == "sagemaker" and view["name"] in history
        source: History = "cloudwatch" if measured else "estimate" if spans else "none"
        instance_type = view.get("instance_type") if view["kind"] == "sagemaker" else None
        # Per instance-hour: local workers run on this machine (0); an unknown type's price is None, never a guess.
        rate = 0.0 if view["kind"] != "sagemaker" else prices.hourly(self.region, instance_type or "")
        count = instances_now(view)
        today = instance_hours(spans, day_start(now), now)
        month = instance_hours(spans, month_start(now), now)
        last_run_at, idle = self._idle(view["name"], runs, now)
        return EndpointCost(
            name=view["name"], kind=view["kind"], state=view["state"], instance_type=instance_type, instances=count,
            hourly=_times(rate, count), instance_hours_today=round(today, 4), instance_hours_month=round(month, 4),
            cost_today=_times(rate, today), cost_month=_times(rate, month), history=source, last_run_at=last_run_at,
            idle_s=idle,
            days=[DayCost(day=d.date().isoformat(), instance_hours=round(h, 4), cost=_times(rate, h))
                  for d in day_starts for h in [instance_hours(spans, d, min(d + timedelta(days=1), now))]])

    @staticmethod
    def _idle(name: str, runs: list[dict[str, Any]], now: datetime) -> tuple[str | None, float | None]:
        """(when the newest run on the endpoint was queued, seconds since it ended: 0 while one is active)."""
        mine = [r for r in runs if (r.get("environment") or "").lower() == name.lower()]
        if not mine:
            return None, None
        newest = max(mine, key=lambda r: r.get("created_at") or "")
        if any(r.get("state") in ACTIVE_RUNS for r in mine):
            return newest.get("created_at"), 0.0
        ends = [t for r in mine if (t := _parse_time(r.get("finished_at") or r.get("created_at")))]
        idle = max(0.0, (now - max(ends)).total_seconds()) if ends else None
        return newest.get("created_at"), idle
