"""Constrained heads: MOS regression plus ranking pairs from synthetic ladders, the 0..100 logistic mapping."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import stats

from contrique_video.errors import InputError
from contrique_video.models.efficientnet_lite import EfficientNetLite, LayoutFeatures
from contrique_video.training.fit import evaluate, protocol_splits
from contrique_video.training.ranking import (
    FeatureCache,
    feature_id,
    StackedFeatures,
    FrameFeatures,
    fit_logistic,
    fit_ranked,
    fit_ridge_std,
    last_from_stages,
    logistic,
    pair_accuracy,
    rank_data,
)


def conflict_problem(seed=0):
    """MOS data in which feature 1 goes slightly against quality, and ladders in which it is the damage axis."""
    rng = np.random.default_rng(seed)
    n, d = 200, 6
    X = rng.normal(size=(n, d))
    X[:, 1] = -0.6 * X[:, 0] + 0.5 * rng.normal(size=n)  # correlated with quality, but ridge gives it w < 0
    y = 50 + 10 * X[:, 0] - 4 * X[:, 1] + rng.normal(size=n)
    # Ladders: level k removes k units of feature 1 (damage lowers it), everything else fixed.
    rows, keys = [], []
    for s in range(8):
        base = rng.normal(size=d)
        for k in range(5):
            rows.append(base - np.eye(d)[1] * k)
            keys.append(f"src{s}|blur|{k}")
    return X, y, dict(zip(keys, rows))


def test_ridge_misorders_the_conflict_and_the_ranking_term_fixes_it():
    X, y, rows = conflict_problem()
    rd = rank_data(rows)
    ridge = fit_ridge_std(X, y)
    ranked = fit_ranked(X, y, rd, lam_rank=5.0, margin=0.5)
    assert pair_accuracy(ridge.predict(rd.X), rd) == 0.0
    assert pair_accuracy(ranked.predict(rd.X), rd) == 1.0
    assert pair_accuracy(ranked.predict(rd.X), rd, adjacent_only=False) == 1.0
    # It still predicts MOS (the ranking term costs a little, not everything).
    assert stats.spearmanr(ranked.predict(X), y)[0] > 0.8
    assert ranked.info["pairs"] == len(rd.pairs) and ranked.info["iterations"] > 0


def test_zero_ranking_weight_is_the_ridge_solution():
    X, y, rows = conflict_problem(1)
    ridge = fit_ridge_std(X, y)
    plain = fit_ranked(X, y, rank_data(rows), lam_rank=0.0)
    np.testing.assert_allclose(plain.predict(X), ridge.predict(X), atol=1e-6)
    assert plain.info["alpha"] == ridge.info["alpha"]


def test_ranked_fit_rejects_bad_arguments():
    X, y, rows = conflict_problem(2)
    with pytest.raises(InputError, match="do not match"):
        fit_ranked(X, y[:-1], None)
    with pytest.raises(InputError, match="margin"):
        fit_ranked(X, y, rank_data(rows), margin=0.0)


def test_rank_data_pairs_every_level_with_the_next_and_with_clean():
    rows = {f"a|noise|{k}": np.full(3, float(k)) for k in range(6)}
    rows.update({f"b|crf_libx264|{k}": np.full(3, 10.0 + k) for k in range(8)})
    rd = rank_data(rows)
    assert rd.counts() == {"pairs": (5 + 4) + (7 + 6), "adjacent_pairs": 5 + 7, "sources": 2, "types": 2, "images": 14}
    for (b, w), kind in zip(rd.pairs, rd.kinds):
        assert rd.X[b, 0] < rd.X[w, 0]  # rows were made so that the better level has the smaller value
    only = rank_data(rows, kinds=["noise"])
    assert set(only.kinds) == {"noise"} and len(only.pairs) == 9
    assert len(rd.subset(["a"]).pairs) == 9
    del rows["a|noise|3"]
    with pytest.raises(InputError, match="missing levels"):
        rank_data(rows)


def test_logistic_mapping_is_increasing_inside_0_100_and_fits_mos():
    rng = np.random.default_rng(3)
    raw = rng.normal(size=500) * 2
    y = 10 + 80 / (1 + np.exp(-(raw - 0.5) / 0.8)) + rng.normal(size=500) * 2
    a, c, m, s = fit_logistic(raw, y)
    assert 0 <= a < c <= 1 and s > 0
    mapped = logistic(raw, (a, c, m, s))
    assert np.sqrt(np.mean((mapped - y) ** 2)) < 3
    wide = np.linspace(-1e4, 1e4, 2001)
    out = logistic(wide, (a, c, m, s))
    assert out.min() >= 0 and out.max() <= 100 and np.all(np.diff(out) >= 0)


def test_evaluate_takes_any_fitter_on_the_same_splits():
    X, y, rows = conflict_problem(4)
    a = evaluate(X, y, splits=3, fitter=fit_ridge_std)
    b = evaluate(X, y, splits=3, fitter=lambda Xt, yt: fit_ranked(Xt, yt, None))
    np.testing.assert_allclose(a["srcc_all"], b["srcc_all"], atol=1e-6)


def test_a_fitter_that_takes_train_indices_gets_each_splits_training_rows():
    X, y, rows = conflict_problem(4)
    seen = []

    def fitter(Xt, yt, train):
        np.testing.assert_array_equal(Xt, X[train])
        seen.append(np.sort(train))
        return fit_ridge_std(Xt, yt)

    c = evaluate(X, y, splits=3, fitter=fitter, fitter_takes_train=True)
    splits = list(protocol_splits(len(y), 3))
    assert [np.sort(tr).tolist() for _, tr in splits] == [s.tolist() for s in seen]
    assert all(not set(te) & set(tr) and len(te) + len(tr) == len(y) for te, tr in splits)
    np.testing.assert_allclose(c["srcc_all"], evaluate(X, y, splits=3, fitter=fit_ridge_std)["srcc_all"], atol=1e-9)


def test_frame_features_are_full_then_half_scale_and_last_slices_out_of_stages():
    torch.manual_seed(0)
    trunk = EfficientNetLite("lite0").eval()
    stages = FrameFeatures(LayoutFeatures(trunk, "stages-meanstd"), "s")
    last = FrameFeatures(LayoutFeatures(trunk, "last"), "l")
    rgb = np.random.default_rng(5).integers(0, 256, size=(72, 96, 3), dtype=np.uint8)
    fs, fl = stages(rgb), last(rgb)
    assert fs.shape == (2 * 2 * sum(trunk.channels),) and fl.shape == (2 * trunk.channels[-1],)
    np.testing.assert_allclose(last_from_stages(fs[None], trunk.channels)[0], fl, rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError):
        last_from_stages(fl[None], trunk.channels)


def test_feature_cache_reuses_rows_and_survives_a_reload(tmp_path):
    calls = []

    def extract(img):
        calls.append(1)
        return img.ravel()[:3].astype(np.float32)

    c = FeatureCache(tmp_path / "c.npz", "x", every=2)
    for k in range(3):
        c.get(f"k{k}", lambda k=k: np.full((2, 2, 3), k, np.uint8), extract)
    c.get("k0", lambda: 1 / 0, extract)  # cached: never made
    c.save()
    assert len(calls) == 3
    again = FeatureCache(tmp_path / "c.npz", "x")
    assert sorted(again.rows) == ["k0", "k1", "k2"] and again.rows["k2"][0] == 2
    with pytest.raises(InputError, match="holds x features, not other"):
        FeatureCache(tmp_path / "c.npz", "other extractor")


def test_stacked_features_keep_each_block_in_its_own_cache_and_make_an_image_once(tmp_path):
    made = []

    def make():
        made.append(1)
        return np.full((2, 2, 3), 7, np.uint8)

    first = FeatureCache(tmp_path / "a.npz", "a")
    first.get("k", make, lambda img: np.array([1.0, 2.0], np.float32))  # already cached: the stack reuses it
    stack = StackedFeatures([(first, lambda img: np.array([3.0, 4.0], np.float32)), (FeatureCache(tmp_path / "b.npz", "b"),
                                                           lambda img: img.ravel()[:1].astype(np.float32))])
    assert "k" not in stack
    np.testing.assert_array_equal(stack.get("k", make), [1.0, 2.0, 7.0])
    assert len(made) == 2 and "k" in stack  # once for the first cache's row, once for the stack's missing block
    np.testing.assert_array_equal(stack.get("j", make), [3.0, 4.0, 7.0])
    assert len(made) == 3  # a new key: one image for both blocks
    stack.save()
    assert sorted(FeatureCache(tmp_path / "b.npz", "b").rows) == ["j", "k"]


def test_feature_id_keeps_reduced_precision_rows_apart(tmp_path):
    """A bf16 run (auto's pick on a bf16 CPU) must not reuse or extend a cache of fp32 rows, nor the reverse."""
    fp32 = SimpleNamespace(model_id="builtin-v3", backend=SimpleNamespace(precision="fp32"))
    bf16 = SimpleNamespace(model_id="builtin-v3", backend=SimpleNamespace(precision="bf16"))
    assert feature_id(fp32) == "builtin-v3"
    assert feature_id(bf16) == "builtin-v3 (bf16)"
    path = tmp_path / "rows.npz"
    cache = FeatureCache(path, feature_id(fp32), every=1)
    cache.get("a", lambda: 0, lambda _: np.ones(3))
    with pytest.raises(InputError, match="holds builtin-v3 features"):
        FeatureCache(path, feature_id(bf16))


def test_a_near_dead_feature_gets_no_weight_that_a_rounding_can_swing():
    """A channel that is zero on every fit image but one (3e-5 there; the other features spread ~0.5) used to be
    z-scored like the rest: builtin-v4's heads gave such a feature a raw weight of -61809, and bf16 rounding it to
    1.4e-4 moved a CLIVE image's score 15 points. Its weight must now move a score by less than 0.1 point even at
    1e-3, in the RidgeCV fit and in the ranked fit, while the live features keep their fit."""
    rng = np.random.default_rng(0)
    X = rng.normal(0.5, 0.5, size=(200, 40))
    y = X[:, :5].sum(axis=1) * 10 + rng.normal(size=200)
    dead = np.zeros(200)
    dead[np.argmax(y)] = 3e-5  # awake on the best image only: z-scored, it would look predictive
    X = np.column_stack([X, dead])
    for fit in (fit_ridge_std(X, y), fit_ranked(X, y, None, lam_rank=0.0)):
        assert abs(fit.weights[-1]) * 1e-3 < 0.1, fit.weights[-1]
        assert stats.pearsonr(fit.predict(X), y)[0] > 0.95
