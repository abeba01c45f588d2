"""The performance guard (bench/guard.py): fresh figures held to those committed in bench/figures.json, and
docs/benchmarks.md's table generated from that file.

In the suite the guard runs on what does not depend on the machine's load: the requests of a short async run with
notices (counted at moto's server, the same run after run; in-process, so in the fast tier) and the extension's
import against aiohttp's and requests' in the same fresh processes (a ratio; 5 processes: marked slow). The run
times through ComfyUIs and the emulator and the requests a minute stay in the CLI (docs/benchmarks.md says why).
"""

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


def test_the_docs_table_is_generated_from_the_committed_figures():
    """Regenerate it with `./dev python bench/guard.py --readme` between the markers of docs/benchmarks.md."""
    documented = guard.section((ROOT / "docs" / "benchmarks.md").read_text())
    assert documented == guard.readme(load()), "docs/benchmarks.md's table is stale: bench/guard.py --readme"


def test_a_stale_docs_table_is_told_apart():
    benches = load()
    bench = benches["async_requests"]
    stale = {**bench.figures, "notices.requests": count(bench.figures["notices.requests"].value + 1)}
    assert guard.readme({**benches, "async_requests": Bench(stale, bench.recorded)}) != guard.readme(benches)
    with pytest.raises(ValueError, match="figures: generated"):
        guard.section("# Benchmarks\n\nno markers\n")


def test_every_committed_figure_states_its_margin_or_allowance_and_why():
    benches = load()
    assert set(benches) == set(guard.BENCHES)
    for name, bench in benches.items():
        assert bench.recorded.get("commit") and bench.recorded.get("load"), name
        for key, f in bench.figures.items():
            assert f.why, f"{name} {key}: no reason for its margin"
            if f.kind == "ratio":
                assert f.margin > 0 and f.baseline, f"{name} {key}"


def fresh_guard(names: str, monkeypatch, capsys) -> None:
    for name in AWS_ENV:  # the rig sets them in os.environ: noted here (set, then unset), put back after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    said: list[str] = []
    code = guard.check(names.split(","), quick=True, say=said.append)
    assert code == 0, "\n".join(said) + "\n" + capsys.readouterr().out[-4000:]


# A run through moto's server (seconds): the fast tier holds the same run to its ceiling (test_requests_per_run.py).
@pytest.mark.slow
def test_a_short_async_runs_requests_are_the_committed_ones(monkeypatch, capsys):
    """Counted, never timed: one run with notices after a first, its requests against bench/figures.json. After a
    change that moves them on purpose: ./dev python bench/guard.py --only async_requests --record."""
    fresh_guard("async_requests", monkeypatch, capsys)


@pytest.mark.slow
def test_the_extensions_import_against_aiohttps_is_no_worse_than_committed(monkeypatch, capsys):
    """A ratio in the same fresh processes (5): a busy machine slows both imports alike."""
    fresh_guard("startup", monkeypatch, capsys)
