"""The one timing harness (contrique_video.timing) and the benchmarks that time through it.

A fake clock stands in for the real one, so the tests check what is measured and in which order, never how fast
anything is. A benchmark with a timing loop of its own would read the real clock and fail here.
"""

from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest

from contrique_video import timing
from contrique_video.backends import autotune, bench
from contrique_video.errors import UnsupportedError


class Clock:
    """A fake ``time`` module for the harness: only the candidates move it, by the seconds they say they took."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def spend(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=fake.perf_counter))
    return fake


def test_warm_up_then_repeats_best_and_median(clock):
    costs = iter([9.0, 3.0, 1.0, 2.0])  # the warm-up's 9 s is not counted

    def work():
        clock.spend(next(costs))
        return clock.now

    got = timing.time_call(work, repeats=3, warmup=1, per=2)
    assert got.wall == (1.5, 0.5, 1.0) and got.best == 0.5 and got.median == 1.0
    assert got.result == 15.0  # the last call's return value
    assert len(got.cpu) == 3 and got.cpu_best >= 0
    with pytest.raises(ValueError):
        timing.time_call(work, repeats=0)


def test_round_robin_interleaves_the_candidates_and_syncs_around_each_call(clock):
    calls = []

    def candidate(name, seconds):
        def run():
            calls.append(name)
            clock.spend(seconds)
            return name
        return run

    got = timing.round_robin({"a": candidate("a", 2.0), "b": candidate("b", 1.0)}, repeats=2, warmup=1,
                             sync=lambda: calls.append("sync"))
    assert calls == ["a", "b"] + ["sync", "a", "sync", "sync", "b", "sync"] * 2
    assert {k: (t.best, t.result) for k, t in got.items()} == {"a": (2.0, "a"), "b": (1.0, "b")}
    both = got["a"] + got["b"]
    assert both.wall == (2.0, 2.0, 1.0, 1.0) and both.result == "b"


def test_cpu_seconds_count_a_child_process():
    burn = "import time\nwhile time.process_time() < 0.3: pass"
    got = timing.time_call(lambda: subprocess.run([sys.executable, "-c", burn], check=True), repeats=1, warmup=0)
    assert got.cpu_best >= 0.25  # os.times counts in clock ticks (10 ms)


def test_auto_times_its_candidates_through_the_harness(clock):
    """autotune.measure: warmed-up candidates, round-robin, best seconds; one that cannot run is left out."""
    costs = {("torch", "fp32"): 0.5, ("onnxruntime", "fp32"): 0.25}

    def open_path(path):
        if path == ("openvino", "bf16"):
            raise UnsupportedError("no bf16 here")
        return lambda frames: clock.spend(costs[path])

    assert autotune.measure(open_path, [*costs, ("openvino", "bf16")], repeats=2) == costs


def test_bench_times_backends_round_robin_per_frame_through_the_harness(clock):
    class Fake:
        def __init__(self, seconds, value):
            self.seconds, self.value = seconds, value

        def __call__(self, frames):
            clock.spend(self.seconds * len(frames))
            return np.full((len(frames), 2), self.value)

    frames = [np.zeros((4, 4, 3), np.uint8)] * 3
    got = bench.time_backends([Fake(0.2, 1.0), Fake(0.1, 2.0)], frames, repeats=2)
    assert [round(seconds, 9) for seconds, _ in got] == [0.2, 0.1]  # seconds per frame
    assert [features.tolist() for _, features in got] == [[[1.0, 1.0]] * 3, [[2.0, 2.0]] * 3]
