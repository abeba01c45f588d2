"""What runs and what it costs (core/costs.py): the history-to-cost arithmetic on a fake clock, local endpoints at
0, an unknown price said as unknown, the idle time from the newest runs, the storage summed by prefix on the folder
store and on S3 (moto), the answer kept a minute unless asked fresh, and a provider that cannot answer."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from comfyui_sagemaker.core import costs, prices
from comfyui_sagemaker.core.costs import Costs, Span
from comfyui_sagemaker.core.errors import SageMakerError
from comfyui_sagemaker.local.folder_store import FolderStore

NOW = datetime(2026, 12, 7, 15, 30, tzinfo=timezone.utc)
TODAY = datetime(2026, 12, 7, tzinfo=timezone.utc)
G5 = prices.hourly("us-east-1", "ml.g5.xlarge")


def at(day: int, hour: int) -> datetime:
    return datetime(2026, 12, day, hour, tzinfo=timezone.utc)


def sagemaker(name="Portraits", state="InService", instances=2, instance_type="ml.g5.xlarge", **more) -> dict:
    return {"name": name, "kind": "sagemaker", "state": state, "instances": instances, "instance_type": instance_type,
            "endpoint_name": f"cs-{name.lower()}", **more}


def local(name="Sketches", state="InService", **more) -> dict:
    return {"name": name, "kind": "local", "state": state, "created_at": (NOW - timedelta(hours=2)).isoformat(),
            "updated_at": (NOW - timedelta(hours=2)).isoformat(), **more}


class Book:
    """What Costs is handed, recorded: endpoint views, their histories, recent runs, the store's sizes."""

    def __init__(self, views=(), history=None, runs=(), sizes=None, store_kind="s3"):
        self.views, self.history, self.runs = list(views), history or {}, list(runs)
        self.sizes = sizes or {}
        self.lists = 0
        self.asked: list[tuple[list[str], datetime, datetime]] = []
        self.clock = NOW
        self.tick = 0.0
        self.costs = Costs("us-east-1", store_kind, self._list, self._usage, lambda n: self.runs[:n],
                           lambda: self.sizes, clock=lambda: self.clock, monotonic=lambda: self.tick)

    def _list(self):
        self.lists += 1
        return self.views, []

    def _usage(self, views, start, end):
        self.asked.append(([v["name"] for v in views], start, end))
        if isinstance(self.history, Exception):
            raise self.history
        return self.history


def row(report, name):
    return next(e for e in report["endpoints"] if e["name"] == name)


def test_instance_hours_are_the_overlap_of_each_span_times_its_instances():
    three_hours_at_two = [Span(at(7, 9), at(7, 12), 2)]
    assert costs.instance_hours(three_hours_at_two, TODAY, NOW) == 6
    assert costs.instance_hours(three_hours_at_two, at(7, 10), at(7, 11)) == 2  # a window inside the span
    assert costs.instance_hours(three_hours_at_two, at(7, 12), NOW) == 0
    assert costs.instance_hours([Span(at(6, 23), at(7, 1), 1)], TODAY, NOW) == 1  # across midnight: today's part


def test_an_endpoint_in_service_three_hours_at_two_instances_is_six_instance_hours_at_its_price():
    history = {"Portraits": [Span(at(7, 9), at(7, 12), 2), Span(at(3, 10), at(3, 15), 1), Span(at(1, 0), at(1, 1), 4)]}
    book = Book([sagemaker(instances=2)], history)
    report = book.costs.report()
    e = row(report, "Portraits")
    assert e["history"] == "cloudwatch" and e["instances"] == 2 and e["instance_type"] == "ml.g5.xlarge"
    assert e["instance_hours_today"] == 6
    assert e["instance_hours_month"] == 6 + 5 + 4  # December 1st counts, November would not
    assert e["cost_today"] == pytest.approx(6 * G5) and e["cost_month"] == pytest.approx(15 * G5)
    assert e["hourly"] == pytest.approx(2 * G5)  # what it costs per hour now: 2 × $1.408
    assert report["totals"]["hourly"] == pytest.approx(2 * G5) and report["totals"]["month"] == pytest.approx(15 * G5)
    # The plot: 30 days ending today, each day's instance-hours and cost; the hourly series of instances.
    days = {d["day"]: d for d in report["days"]}
    assert len(report["days"]) == costs.DAYS and report["days"][-1]["day"] == "2026-12-07"
    assert days["2026-12-07"]["instance_hours"] == 6 and days["2026-12-03"]["cost"] == pytest.approx(5 * G5)
    assert report["days"][0]["day"] == "2026-11-08" and report["days"][0]["instance_hours"] == 0
    series = report["series"]
    assert series["start"] == "2026-11-08T00:00:00+00:00" and series["step_s"] == 3600
    hour = int((at(7, 10) - datetime.fromisoformat(series["start"])).total_seconds() // 3600)
    assert series["instances"][hour] == 2 and series["instances"][hour + 3] == 0
    assert len(series["instances"]) == 29 * 24 + 16  # up to the hour now runs in
    # The history asked for covers the plot and the month, up to now.
    [(names, start, end)] = book.asked
    assert names == ["Portraits"] and start == datetime(2026, 11, 8, tzinfo=timezone.utc) and end == NOW


def test_local_endpoints_cost_nothing_and_their_instance_hours_are_estimated_from_their_view():
    book = Book([local(), local("Gone", state="Stopped")])
    report = book.costs.report()
    e = row(report, "Sketches")
    assert e["instances"] == 1 and e["hourly"] == 0 and e["cost_today"] == 0 and e["cost_month"] == 0
    assert e["history"] == "estimate" and e["instance_hours_today"] == 2  # one worker since it was made
    stopped = row(report, "Gone")
    assert stopped["instances"] == 0 and stopped["history"] == "none" and stopped["instance_hours_month"] == 0
    assert report["totals"] == {"hourly": 0, "today": 0, "month": 0, "monthly_storage": 0}


def test_an_instance_type_the_price_table_lacks_is_price_unknown_never_a_guess():
    book = Book([sagemaker(instance_type="ml.p5.48xlarge"), sagemaker("Other", instances=1)],
                {"Portraits": [Span(at(7, 9), at(7, 10), 1)]})
    report = book.costs.report()
    e = row(report, "Portraits")
    assert e["hourly"] is None and e["cost_today"] is None and e["instance_hours_today"] == 1
    assert report["totals"]["hourly"] is None and report["totals"]["month"] is None  # a sum with an unknown is unknown


def test_without_metrics_a_sagemaker_endpoint_is_estimated_and_the_refusal_said():
    book = Book([sagemaker(instances=1, updated_at=(NOW - timedelta(hours=3)).isoformat())],
                SageMakerError("access denied: cloudwatch:GetMetricData"))
    report = book.costs.report()
    e = row(report, "Portraits")
    assert e["history"] == "estimate" and e["instance_hours_today"] == 3
    assert e["cost_today"] == pytest.approx(3 * G5)
    assert report["unavailable"] == [{"kind": "metrics", "reason": "access denied: cloudwatch:GetMetricData"}]


def test_idle_time_is_since_the_newest_run_on_the_endpoint_ended_and_zero_while_one_runs():
    runs = [{"environment": "portraits", "state": "succeeded", "created_at": "2026-12-07T14:00:00+00:00",
             "finished_at": "2026-12-07T14:10:00+00:00"},
            {"environment": "Portraits", "state": "failed", "created_at": "2026-12-07T12:00:00+00:00",
             "finished_at": "2026-12-07T12:01:00+00:00"},
            {"environment": "Other", "state": "running", "created_at": "2026-12-07T15:00:00+00:00",
             "finished_at": None}]
    book = Book([sagemaker(), sagemaker("Other"), sagemaker("Never")], {}, runs)
    report = book.costs.report()
    assert row(report, "Portraits")["idle_s"] == 80 * 60  # 14:10 to 15:30 (names are case-insensitive)
    assert row(report, "Portraits")["last_run_at"] == "2026-12-07T14:00:00+00:00"
    assert row(report, "Other")["idle_s"] == 0
    assert row(report, "Never")["idle_s"] is None and row(report, "Never")["last_run_at"] is None


def test_the_answer_is_kept_a_minute_unless_asked_fresh():
    book = Book([local()])
    first = book.costs.report()
    book.tick = costs.CACHE_S - 1
    assert book.costs.report() is first and book.lists == 1  # nothing asked of the store or AWS again
    assert book.costs.report(fresh=True) is not first and book.lists == 2
    book.tick += costs.CACHE_S
    book.costs.report()
    assert book.lists == 3


def test_storage_is_summed_by_top_level_prefix_at_the_s3_rate():
    sizes = {"blobs/sha256/" + "a" * 64: 3 * 2**30, "blobs/sha256/" + "b" * 64: 2**30, "async/requests/x.json": 100,
             "async/outputs/y.out": 900, "executions/records/i/x.json": 50, "loose": 7}
    report = Book(sizes=sizes).costs.report()
    storage = report["storage"]
    rows = {p["prefix"]: p for p in storage["prefixes"]}
    assert rows["blobs/"] == {"prefix": "blobs/", "objects": 2, "bytes": 4 * 2**30,
                              "monthly": pytest.approx(4 * prices.stack_rate("us-east-1", "s3_gb_month"))}
    assert rows["async/"]["objects"] == 2 and rows["async/"]["bytes"] == 1000
    assert rows["executions/"]["bytes"] == 50 and rows["loose"]["bytes"] == 7
    assert storage["bytes"] == sum(sizes.values()) and storage["kind"] == "s3"
    assert report["totals"]["monthly_storage"] == storage["monthly"]
    assert Book(sizes=sizes, store_kind="folder").costs.report()["storage"]["monthly"] == 0  # this machine's disk


@pytest.fixture(params=["folder", "s3"])
def filled_store(request, tmp_path, aws_env):
    objects = {"blobs/sha256/" + "c" * 64: b"x" * 1000, "async/requests/r1.json": b"{}",
               "async/progress/p1.json": b"{\"a\": 1}", "templates/T1.json": b"[]"}
    if request.param == "folder":
        store = FolderStore(tmp_path / "store")
        for key, data in objects.items():
            store.put(key, data)
        (tmp_path / "store" / "async" / ".partial-upload").write_bytes(b"12345")  # a temporary file: not an object
        yield store, objects
        return
    import uuid

    from comfyui_sagemaker.aws.s3_store import S3Store
    from moto import mock_aws

    s3 = request.getfixturevalue("moto_s3_client")
    with mock_aws():
        bucket = f"costs-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="elsewhere/blobs/x", Body=b"not this store's")  # another prefix
        store = S3Store(bucket, "team/a", s3_client=s3)
        for key, data in objects.items():
            store.put(key, data)
        yield store, objects


def test_each_store_says_the_size_of_every_object_with_its_listing(filled_store):
    store, objects = filled_store
    assert store.sizes() == {key: len(data) for key, data in objects.items()}
    assert store.sizes("async/") == {"async/requests/r1.json": 2, "async/progress/p1.json": 8}
    rows = {p["prefix"]: p["bytes"] for p in costs.storage_cost(store.kind, "us-east-1", store.sizes())["prefixes"]}
    assert rows == {"async/": 10, "blobs/": 1000, "templates/": 2}
