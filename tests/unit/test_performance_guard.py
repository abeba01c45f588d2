"""The performance guard (bench/guard.py): fresh figures held to those committed in bench/figures.json."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "bench"))  # last: its modules (worker, templates...) shadow nothing
import guard  # noqa: E402
from figures import Bench, Figure, dump, load, record  # noqa: E402

AWS_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION",
           "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME")


def ratio(value: float, margin: float = 0.5) -> Figure:
    return Figure(value, "ratio", "x", "a path", baseline="the same workflow locally", margin=margin)


def count(value: float, allowance: float = 0) -> Figure:
    return Figure(value, "count", "requests", "requests per run", allowance=allowance)


def verdicts(committed: dict[str, Figure], fresh: dict[str, Figure], quick: bool = False) -> dict[str, str]:
    return {f.key: f.verdict for f in guard.compare({"b": Bench(committed)}, {"b": fresh}, quick)}


def test_a_ratio_fails_only_when_worse_than_its_margin():
    committed = {"realtime.ratio": ratio(2.0, margin=0.5)}
    assert verdicts(committed, {"realtime.ratio": ratio(2.9)}) == {"realtime.ratio": "ok"}
    assert verdicts(committed, {"realtime.ratio": ratio(1.2)}) == {"realtime.ratio": "ok"}  # faster: noise too
    assert verdicts(committed, {"realtime.ratio": ratio(3.1)}) == {"realtime.ratio": "worse"}


def test_a_count_is_held_exactly_both_ways_and_a_fall_asks_to_be_recorded():
    committed = {"notices.requests": count(23), "polling.requests": count(24, allowance=4)}
    assert set(verdicts(committed, {"notices.requests": count(23), "polling.requests": count(28)}).values()) == {"ok"}
    assert verdicts(committed, {"notices.requests": count(24), "polling.requests": count(29)}) == {
        "notices.requests": "worse", "polling.requests": "worse"}
    [fell] = [f for f in guard.compare({"b": Bench(committed)}, {"b": {"notices.requests": count(22),
                                                                      "polling.requests": count(24)}}) if f.fails]
    assert fell.verdict == "better" and "--record" in fell.message


def test_a_rate_fails_only_on_a_rise_and_a_shown_figure_never():
    rate = Figure(158, "rate", "requests/min", "a page open", allowance=8)
    shown = Figure(300, "shown", "ms", "added time")
    committed = {"page": rate, "ms": shown}
    assert verdicts(committed, {"page": Figure(120, "rate", "requests/min", "x"), "ms": Figure(9000, "shown", "ms",
                                                                                                 "x")}) == {
        "page": "ok", "ms": "ok"}
    assert verdicts(committed, {"page": Figure(167, "rate", "requests/min", "x"), "ms": shown})["page"] == "worse"


def test_a_figure_on_one_side_only_fails_but_for_those_a_quick_run_leaves_out():
    committed = {"notices.requests": count(23), "polling.requests": count(24, 4)}
    assert verdicts(committed, {"notices.requests": count(23)}) == {"notices.requests": "ok",
                                                                    "polling.requests": "gone"}
    assert verdicts(committed, {"notices.requests": count(23)}, quick=True) == {"notices.requests": "ok"}
    assert verdicts(committed, {**committed, "new.requests": count(1)})["new.requests"] == "new"


def test_a_ratio_names_its_baseline_and_a_kind_is_one_of_four():
    with pytest.raises(ValueError, match="baseline"):
        Figure(1.5, "ratio", "x", "a path")
    with pytest.raises(ValueError, match="kind"):
        Figure(1.5, "seconds", "s", "a path")


def test_recording_replaces_one_bench_keeps_the_others_and_a_quick_run_merges(tmp_path):
    path = tmp_path / "figures.json"
    dump({"startup": Bench({"import.ratio": ratio(1.4)})}, path)
    record("async_requests", {"notices.requests": count(23), "polling.requests": count(24, 4)}, path)
    record("async_requests", {"notices.requests": count(12)}, path, merge=True)
    benches = load(path)
    assert benches["startup"].figures == {"import.ratio": ratio(1.4)}
    assert benches["async_requests"].figures == {"notices.requests": count(12), "polling.requests": count(24, 4)}
    assert benches["async_requests"].recorded["load"]  # the machine's business when it was recorded
