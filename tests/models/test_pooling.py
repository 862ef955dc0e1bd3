"""Pooled statistics of frame scores and the running feature mean, against values worked out by hand.

Each expected value below is computed on paper, so a changed definition (p10 for p5, sample std for
population std, median of the wrong half) fails here even when every end-to-end test stays green.
"""

from __future__ import annotations

import numpy as np
import pytest

from contrique_video.pooling import RunningMean, score_stats


def test_every_statistic_on_five_scores():
    stats = score_stats(np.array([30.0, 10.0, 50.0, 20.0, 40.0]))  # unsorted on purpose
    assert stats["mean"] == pytest.approx(30.0)
    # 5 / (1/10 + 1/20 + 1/30 + 1/40 + 1/50) = 5 / (137/600) = 3000/137
    assert stats["harmonic_mean"] == pytest.approx(3000 / 137)
    assert stats["min"] == 10.0 and stats["max"] == 50.0
    assert stats["median"] == pytest.approx(30.0)
    # linear interpolation between order statistics: position 0.05 * (5 - 1) = 0.2, so 10 + 0.2 * (20 - 10)
    assert stats["p5"] == pytest.approx(12.0)
    # population std: deviations 20, 10, 0, 10, 20 -> variance 1000 / 5 = 200 (the sample std would be sqrt(250))
    assert stats["std"] == pytest.approx(np.sqrt(200.0))
    assert set(stats) == {"mean", "harmonic_mean", "min", "max", "median", "p5", "std"}


def test_median_of_an_even_count_and_p5_of_twenty_one_scores():
    assert score_stats(np.array([4.0, 1.0, 3.0, 2.0]))["median"] == pytest.approx(2.5)
    scores = np.arange(0, 101, 5, dtype=float)[::-1]  # 100, 95, ..., 0: 21 scores
    stats = score_stats(scores)
    assert stats["p5"] == pytest.approx(5.0)  # position 0.05 * 20 = 1: the second lowest
    assert stats["median"] == pytest.approx(50.0)


def test_harmonic_mean_is_null_unless_every_score_is_positive():
    assert score_stats(np.array([2.0, 0.0, 4.0]))["harmonic_mean"] is None
    assert score_stats(np.array([2.0, -1.0, 4.0]))["harmonic_mean"] is None
    assert score_stats(np.array([2.0, 4.0]))["harmonic_mean"] == pytest.approx(2 / (1 / 2 + 1 / 4))  # 8/3


def test_one_frame_gives_that_score_everywhere():
    stats = score_stats(np.array([42.5]))
    assert {k: v for k, v in stats.items() if k != "std"} == {k: 42.5 for k in stats if k != "std"}
    assert stats["std"] == 0.0


def test_statistics_are_plain_floats_for_json():
    stats = score_stats(np.array([1, 2, 3], dtype=np.int64))
    assert all(type(v) is float for v in stats.values())
    assert stats["mean"] == 2.0 and stats["harmonic_mean"] == pytest.approx(3 / (1 + 1 / 2 + 1 / 3))


def test_running_mean_over_chunks_equals_the_mean_of_all_rows():
    rows = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [6.0, 60.0]])
    pooled = RunningMean()
    pooled.add(rows[:1])
    pooled.add(rows[1:3])
    pooled.add(rows[3:])
    assert pooled.count == 4
    np.testing.assert_allclose(pooled.mean, [3.0, 30.0])  # (1 + 2 + 3 + 6) / 4


def test_running_mean_accumulates_float32_rows_in_float64():
    pooled = RunningMean()
    pooled.add(np.array([[16777216.0], [1.0], [1.0]], dtype=np.float32))  # 2**24 + 1 is not a float32
    assert pooled.mean[0] == pytest.approx((2**24 + 2) / 3, abs=1e-9)
    assert pooled.mean.dtype == np.float64


def test_running_mean_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="no frames"):
        RunningMean().mean
