"""core/net/retry.py, the one backoff: pauses that double up to a cap, jittered, bounded by tries or a deadline (on
an injected clock, so nothing here waits), and `retry`, which tries again only what its predicate allows."""

from __future__ import annotations

import itertools

import pytest
from comfyui_sagemaker.core.net.retry import Backoff, retry


def test_pauses_double_up_to_the_cap():
    assert list(itertools.islice(Backoff(1.0, cap=60).pauses(), 8)) == [1, 2, 4, 8, 16, 32, 60, 60]
    assert list(itertools.islice(Backoff(0.5, factor=1.5).pauses(), 3)) == [0.5, 0.75, 1.125]


def test_attempts_count_the_first_try():
    assert list(Backoff(0.05, attempts=5).pauses()) == [0.05, 0.1, 0.2, 0.4]
    assert list(Backoff(1.0, attempts=1).pauses()) == []


def test_jitter_spreads_each_pause_within_its_bounds():
    low = list(Backoff(0.05, attempts=3, jitter=0.5).pauses(rand=lambda: 0.0))
    high = list(Backoff(0.05, attempts=3, jitter=0.5).pauses(rand=lambda: 1.0))
    assert low == pytest.approx([0.025, 0.05]) and high == pytest.approx([0.075, 0.15])


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_no_pause_ends_past_the_deadline_counted_from_before_the_first_try():
    clock = Clock()
    pauses = Backoff(1.0, deadline=10).pauses(clock=clock)
    clock.now += 2  # the first try took 2 s
    got = []
    for pause in pauses:
        got.append(pause)
        clock.now += pause
    assert got == [1, 2, 4] and clock.now == 109  # a pause of 8 would end at 2 + 7 + 8 = 17 s


def test_a_deadline_given_as_a_function_is_read_at_each_pause():
    clock, limit = Clock(), [100.0]
    pauses = Backoff(1.0, deadline=lambda: limit[0]).pauses(clock=clock)
    assert next(pauses) == 1
    limit[0] = 1.5  # shortened meanwhile
    clock.now += 1
    assert next(pauses, None) is None


class Flaky:
    def __init__(self, failures: list[Exception], value: str = "done"):
        self.failures, self.value, self.calls = list(failures), value, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.value


def test_retry_tries_again_what_is_retryable_and_returns_the_answer():
    slept: list[float] = []
    call = Flaky([TimeoutError(), TimeoutError()])
    assert retry(call, Backoff(0.1), lambda err: isinstance(err, TimeoutError), sleep=slept.append) == "done"
    assert call.calls == 3 and slept == [0.1, 0.2]


def test_retry_raises_at_once_what_is_not_retryable():
    slept: list[float] = []
    call = Flaky([ValueError("bad")])
    with pytest.raises(ValueError, match="bad"):
        retry(call, Backoff(0.1, attempts=5), lambda err: isinstance(err, TimeoutError), sleep=slept.append)
    assert call.calls == 1 and slept == []


def test_retry_raises_the_last_failure_when_no_try_is_left():
    slept: list[float] = []
    call = Flaky([TimeoutError("1"), TimeoutError("2"), TimeoutError("3")])
    with pytest.raises(TimeoutError, match="3"):
        retry(call, Backoff(0.1, attempts=3), lambda err: True, sleep=slept.append)
    assert call.calls == 3 and slept == [0.1, 0.2]
