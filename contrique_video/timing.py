"""The one timing harness: warm-up calls, then timed repeats, wall and CPU seconds, best and median.

Benchmarks (``bench``, ``auto``'s timing, the precision check, the speed studies) time through it, so
each measures the same way. :func:`round_robin` times several candidates interleaved, one call of each per
round, so a slow spell on a shared machine hits all of them alike rather than one; compare them as ratios.
CPU seconds are this process's and its finished children's (user + system, :func:`os.times`), so a benchmark
that runs the CLI in a child process is measured the same way.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K")
T = TypeVar("T")


@dataclass(frozen=True)
class Timing(Generic[T]):
    """Seconds of each timed call (divided by ``per``, the items one call handles) and what the last one returned."""

    wall: tuple[float, ...]
    cpu: tuple[float, ...]
    result: T

    @property
    def best(self) -> float:
        """The fastest call's wall seconds: the least disturbed by other load."""
        return min(self.wall)

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_best(self) -> float:
        return min(self.cpu)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)

    def __add__(self, other: Timing[T]) -> Timing[T]:
        """Both sets of calls, as if timed in one run (the later result kept)."""
        return Timing(self.wall + other.wall, self.cpu + other.cpu, other.result)


def cpu_seconds() -> float:
    """User and system CPU seconds of this process and of its children that have been waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def time_call(fn: Callable[[], T], repeats: int = 3, warmup: int = 1, per: int = 1,
              sync: Callable[[], None] | None = None) -> Timing[T]:
    """Time ``fn()``: ``warmup`` untimed calls (compiles, allocations, caches), then ``repeats`` timed ones."""
    return round_robin({None: fn}, repeats, warmup, per, sync)[None]


def round_robin(candidates: Mapping[K, Callable[[], T]], repeats: int = 3, warmup: int = 1, per: int = 1,
                sync: Callable[[], None] | None = None) -> dict[K, Timing[T]]:
    """Time each candidate ``repeats`` times, going round the candidates once per repeat, after ``warmup``
    untimed calls of each. ``sync`` (e.g. ``torch.cuda.synchronize``) runs before each clock read, so work queued
    on a device is counted where it ran."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    done = sync or (lambda: None)
    results: dict[K, object] = {}
    for key, fn in candidates.items():
        for _ in range(warmup):
            results[key] = fn()
    wall: dict[K, list[float]] = {key: [] for key in candidates}
    cpu: dict[K, list[float]] = {key: [] for key in candidates}
    for _ in range(repeats):
        for key, fn in candidates.items():
            done()
            w, c = time.perf_counter(), cpu_seconds()
            results[key] = fn()
            done()
            wall[key].append((time.perf_counter() - w) / per)
            cpu[key].append((cpu_seconds() - c) / per)
    return {key: Timing(tuple(wall[key]), tuple(cpu[key]), results[key]) for key in candidates}
