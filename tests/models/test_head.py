import json
import os
import pickle

import numpy as np
import pytest

from contrique_video.errors import ContriqueError, ModelError
from contrique_video.models import head as head_mod
from contrique_video.models.head import LinearHead, builtin_heads, resolve_head


def make_head(dim=16, seed=0, **kw):
    rng = np.random.default_rng(seed)
    args = dict(
        weights=rng.normal(size=dim),
        intercept=float(rng.normal()),
        name="test",
        features="builtin-v1",
        trained_on="unit test data, 12 images",
        scale="MOS",
        range=(0.0, 100.0),
        higher_is_better=True,
        extra={"alpha": 0.1, "cv": {"srocc": 0.9}},
    )
    args.update(kw)
    return LinearHead(**args)


def write_doc(path, doc):
    path.write_text(json.dumps(doc))
    return path


def good_doc(dim=4):
    return {
        "format": "contrique-video-head",
        "version": 1,
        "name": "x",
        "features": "contrique-official",
        "trained_on": "t",
        "scale": "MOS",
        "range": [0, 100],
        "higher_is_better": True,
        "intercept": 1.5,
        "weights": [0.5] * dim,
        "extra": {},
    }


def assert_one_line_model_error(excinfo):
    assert isinstance(excinfo.value, ModelError)
    assert isinstance(excinfo.value, ContriqueError)
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    return msg


# ---------------------------------------------------------------- construction / predict


def test_fields_and_dim():
    h = make_head(dim=4096)
    assert h.dim == 4096
    assert h.weights.dtype == np.float64 and h.weights.shape == (4096,)
    assert isinstance(h.intercept, float)
    assert h.range == (0.0, 100.0)


def test_predict_shapes_and_values():
    h = make_head(dim=32)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(7, 32))
    out = h.predict(X)
    assert out.shape == (7,) and out.dtype == np.float64
    np.testing.assert_allclose(out, X @ h.weights + h.intercept, rtol=0, atol=1e-12)
    one = h.predict(X[3])
    assert one.shape == (1,)
    assert one[0] == pytest.approx(out[3], abs=1e-12)
    # float32 and list inputs are accepted
    np.testing.assert_allclose(h.predict(X.astype(np.float32)), X.astype(np.float32).astype(np.float64) @ h.weights + h.intercept)
    np.testing.assert_allclose(h.predict(X.tolist()), out)


def test_predict_empty_batch():
    h = make_head(dim=8)
    assert h.predict(np.zeros((0, 8))).shape == (0,)


def test_predict_dimension_mismatch_names_both_sizes():
    h = make_head(dim=4096)
    with pytest.raises(ModelError) as ei:
        h.predict(np.zeros((3, 2048)))
    msg = assert_one_line_model_error(ei)
    assert "4096" in msg and "2048" in msg
    with pytest.raises(ModelError) as ei:
        h.predict(np.zeros(2048))
    msg = assert_one_line_model_error(ei)
    assert "4096" in msg and "2048" in msg


def test_predict_wrong_rank():
    h = make_head(dim=4)
    with pytest.raises(ModelError):
        h.predict(np.zeros((2, 2, 4)))
    with pytest.raises(ModelError):
        h.predict([["a", "b", "c", "d"]])


@pytest.mark.parametrize(
    "override",
    [
        {"weights": np.array([1.0, np.nan])},
        {"weights": np.array([1.0, np.inf])},
        {"weights": np.zeros((2, 2))},
        {"weights": np.zeros(0)},
        {"intercept": float("nan")},
        {"intercept": "1.0"},
        {"range": (1.0, 0.0)},
        {"range": (0.0,)},
        {"range": (0.0, float("inf"))},
        {"higher_is_better": 1},
        {"name": ""},
        {"name": 3},
        {"scale": None},
        {"extra": {"x": object()}},
        {"extra": {1: "non-string key"}},
        {"extra": []},
    ],
)
def test_constructor_validates(override):
    with pytest.raises(ModelError) as ei:
        make_head(**override)
    assert_one_line_model_error(ei)


def test_weights_are_copied():
    w = np.arange(4, dtype=np.float64)
    h = make_head(weights=w)
    w[0] = 99.0
    assert h.weights[0] == 0.0


def test_extra_is_normalised_to_plain_json(tmp_path):
    h = make_head(extra={"srcc": np.float32(0.5), "n": np.int64(3), "nan": float("nan"), "arr": np.arange(2),
                         "nested": {"t": (1, 2.5), "ok": np.bool_(True)}})
    assert h.extra == {"srcc": 0.5, "n": 3, "nan": None, "arr": [0, 1], "nested": {"t": [1, 2.5], "ok": True}}
    p = tmp_path / "h.json"
    h.save(p)
    assert LinearHead.load(p).extra == h.extra


# ---------------------------------------------------------------- save / load


def test_round_trip_bit_exact(tmp_path):
    rng = np.random.default_rng(3)
    w = rng.normal(size=4096) * 10.0 ** rng.integers(-30, 30, size=4096)
    w[:8] = [1 / 3, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -1e-300, 0.1, 1 - 2**-53]
    h = make_head(weights=w, intercept=53.48949000000001, range=(0.0, 1.0), higher_is_better=False, scale="DMOS")
    p = tmp_path / "h.json"
    h.save(p)
    g = LinearHead.load(p)
    assert g.weights.tobytes() == w.astype(np.float64).tobytes()  # bit-exact, incl. -0.0 and subnormals
    assert g.intercept == h.intercept
    assert (g.name, g.features, g.trained_on, g.scale, g.range, g.higher_is_better, g.extra) == (
        h.name,
        h.features,
        h.trained_on,
        h.scale,
        h.range,
        h.higher_is_better,
        h.extra,
    )
    X = rng.normal(size=(5, 4096))
    with np.errstate(over="ignore", invalid="ignore"):  # the extreme test weights overflow on purpose
        assert np.array_equal(g.predict(X), h.predict(X), equal_nan=True)


def test_json_layout(tmp_path):
    h = make_head(dim=3)
    p = tmp_path / "h.json"
    h.save(p)
    doc = json.loads(p.read_text())
    assert doc["format"] == "contrique-video-head"
    assert doc["version"] == 1
    assert set(doc) == {
        "format", "version", "name", "features", "trained_on", "scale", "range",
        "higher_is_better", "intercept", "weights", "extra",
    }
    assert doc["range"] == [0.0, 100.0]
    assert doc["weights"] == h.weights.tolist()
    assert all(isinstance(v, float) for v in doc["weights"])
    assert doc["extra"] == {"alpha": 0.1, "cv": {"srocc": 0.9}}
    assert "NaN" not in p.read_text()


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    p = tmp_path / "h.json"
    make_head(seed=1).save(p)
    make_head(seed=2).save(p)  # overwrite in place
    assert sorted(os.listdir(tmp_path)) == ["h.json"]
    assert np.array_equal(LinearHead.load(p).weights, make_head(seed=2).weights)


def test_save_failure_keeps_old_file(tmp_path, monkeypatch):
    p = tmp_path / "h.json"
    old = make_head(seed=1)
    old.save(p)
    before = p.read_bytes()

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(head_mod.os, "replace", boom)
    with pytest.raises(ModelError) as ei:
        make_head(seed=2).save(p)
    assert_one_line_model_error(ei)
    assert p.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["h.json"]  # temp file cleaned up


def test_save_into_missing_directory(tmp_path):
    with pytest.raises(ModelError):
        make_head().save(tmp_path / "nope" / "h.json")


def test_save_uses_umask_permissions(tmp_path):
    p = tmp_path / "h.json"
    make_head().save(p)
    mask = os.umask(0)
    os.umask(mask)
    if os.name == "posix":
        assert (p.stat().st_mode & 0o777) == (0o666 & ~mask)


def test_load_accepts_integer_numbers(tmp_path):
    p = write_doc(tmp_path / "h.json", good_doc())
    h = LinearHead.load(p)
    assert h.range == (0.0, 100.0) and h.dim == 4 and h.intercept == 1.5


def _corrupt_cases():
    def mod(**changes):
        d = good_doc()
        for k, v in changes.items():
            if v is KeyError:
                del d[k]
            else:
                d[k] = v
        return json.dumps(d)

    nan_weight = json.dumps(good_doc()).replace('"weights": [0.5,', '"weights": [NaN,')
    inf_weight = json.dumps(good_doc()).replace('"weights": [0.5,', '"weights": [Infinity,')
    huge_weight = json.dumps(good_doc()).replace('"weights": [0.5,', '"weights": [1e400,')
    dup = json.dumps(good_doc())[:-1] + ', "name": "y"}'
    return {
        "not json": "this is not json",
        "truncated": json.dumps(good_doc())[:40],
        "empty": "",
        "top-level list": "[1, 2, 3]",
        "wrong tag": mod(format="something-else"),
        "missing tag": mod(format=KeyError),
        "wrong version": mod(version=3),
        "mapping in version 1": mod(mapping={"kind": "logistic", "params": [0.1, 0.9, 0.0, 1.0]}),
        "unknown mapping kind": mod(version=2, mapping={"kind": "cubic", "params": [0.1, 0.9, 0.0, 1.0]}),
        "mapping not object": mod(version=2, mapping=[0.1, 0.9, 0.0, 1.0]),
        "mapping 3 params": mod(version=2, mapping={"kind": "logistic", "params": [0.1, 0.9, 0.0]}),
        "mapping string param": mod(version=2, mapping={"kind": "logistic", "params": [0.1, "0.9", 0.0, 1.0]}),
        "mapping decreasing": mod(version=2, mapping={"kind": "logistic", "params": [0.9, 0.1, 0.0, 1.0]}),
        "mapping leaves range": mod(version=2, mapping={"kind": "logistic", "params": [-0.1, 0.9, 0.0, 1.0]}),
        "mapping zero scale": mod(version=2, mapping={"kind": "logistic", "params": [0.1, 0.9, 0.0, 0.0]}),
        "mapping negative scale": mod(version=2, mapping={"kind": "logistic", "params": [0.1, 0.9, 0.0, -1.0]}),
        "mapping extra key": mod(version=2, mapping={"kind": "logistic", "params": [0.1, 0.9, 0.0, 1.0], "x": 1}),
        "fit not object": mod(version=2, fit=[1, 2]),
        "version as string": mod(version="1"),
        "version as bool": mod(version=True),
        "missing weights": mod(weights=KeyError),
        "missing extra": mod(extra=KeyError),
        "missing name": mod(name=KeyError),
        "nan weight": nan_weight,
        "inf weight": inf_weight,
        "overflowing weight": huge_weight,
        "string weight": mod(weights=[0.5, "0.5"]),
        "bool weight": mod(weights=[0.5, True]),
        "null weight": mod(weights=[0.5, None]),
        "nested weight": mod(weights=[[0.5]]),
        "empty weights": mod(weights=[]),
        "weights not list": mod(weights={"a": 1}),
        "nan intercept": json.dumps(good_doc()).replace('"intercept": 1.5', '"intercept": NaN'),
        "string intercept": mod(intercept="1.5"),
        "range wrong length": mod(range=[0]),
        "range reversed": mod(range=[100, 0]),
        "range strings": mod(range=["0", "100"]),
        "hib as int": mod(higher_is_better=1),
        "name not string": mod(name=5),
        "extra not object": mod(extra=[1]),
        "duplicate key": dup,
        "n_features_in mismatch": mod(extra={"n_features_in": 5}),
    }


@pytest.mark.parametrize("case", sorted(_corrupt_cases()))
def test_load_rejects_corrupt(tmp_path, case):
    p = tmp_path / "h.json"
    p.write_text(_corrupt_cases()[case])
    with pytest.raises(ModelError) as ei:
        LinearHead.load(p)
    msg = assert_one_line_model_error(ei)
    assert str(p) in msg


def test_load_rejects_binary_and_pickles(tmp_path):
    p = tmp_path / "h.json"
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ModelError):
        LinearHead.load(p)
    q = tmp_path / "CLIVE.save"
    q.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ModelError, match="import_ridge"):
        LinearHead.load(q)


def test_load_missing_file_and_directory(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        LinearHead.load(tmp_path / "missing.json")
    with pytest.raises(ModelError, match="not a file"):
        LinearHead.load(tmp_path)


# ---------------------------------------------------------------- builtin heads / resolve


def test_builtin_heads_is_a_dict_of_existing_json_files():
    heads = builtin_heads()
    assert isinstance(heads, dict)
    for name, path in heads.items():
        assert path.suffix == ".json" and path.is_file() and path.stem == name


def test_builtin_heads_absent_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(head_mod, "HEADS_DIR", tmp_path / "absent")
    assert builtin_heads() == {}
    (tmp_path / "absent").mkdir()
    assert builtin_heads() == {}


def test_every_shipped_head_loads():
    for name, path in builtin_heads().items():
        h = LinearHead.load(path)
        assert h.dim > 0, name


def test_resolve_builtin_and_path(tmp_path, monkeypatch):
    heads_dir = tmp_path / "heads"
    heads_dir.mkdir()
    make_head(seed=1, name="clive").save(heads_dir / "clive.json")
    make_head(seed=2, name="live").save(heads_dir / "live.json")
    monkeypatch.setattr(head_mod, "HEADS_DIR", heads_dir)
    assert set(builtin_heads()) == {"clive", "live"}
    assert resolve_head("clive").name == "clive"
    assert resolve_head("CLIVE").name == "clive"  # case-insensitive builtin names
    assert resolve_head(str(heads_dir / "live.json")).name == "live"
    assert resolve_head(heads_dir / "live.json").name == "live"  # PathLike

    with pytest.raises(ModelError) as ei:
        resolve_head("nosuchhead")
    msg = assert_one_line_model_error(ei)
    assert "nosuchhead" in msg and "clive" in msg and "live" in msg


def test_resolve_unknown_with_no_builtins(tmp_path, monkeypatch):
    monkeypatch.setattr(head_mod, "HEADS_DIR", tmp_path / "absent")
    with pytest.raises(ModelError, match="none installed"):
        resolve_head("clive")
    with pytest.raises(ModelError, match="not found"):
        resolve_head(str(tmp_path / "missing.json"))
    with pytest.raises(ModelError):
        resolve_head("")


def test_resolve_pickle_path_points_to_import_ridge(tmp_path):
    p = tmp_path / "CLIVE.save"
    p.write_bytes(b"\x80\x04N.")
    with pytest.raises(ModelError, match="import_ridge"):
        resolve_head(str(p))


# ---- version 2: logistic mapping into the range, raw values kept, fitting metadata


LOGISTIC = {"kind": "logistic", "params": [0.05, 0.95, 0.3, 2.0]}


def test_head_without_mapping_is_identity_and_written_as_version_1(tmp_path):
    h = make_head()
    X = np.random.default_rng(1).normal(size=(5, 16))
    np.testing.assert_array_equal(h.predict(X), h.predict_raw(X))
    h.save(tmp_path / "h.json")
    doc = json.loads((tmp_path / "h.json").read_text())
    assert doc["version"] == 1 and "mapping" not in doc and "fit" not in doc


def test_logistic_mapping_is_monotone_and_inside_the_range():
    h = make_head(mapping=LOGISTIC)
    X = np.random.default_rng(2).normal(size=(400, 16)) * 50  # raw values far outside the logistic's centre
    raw, score = h.predict_raw(X), h.predict(X)
    assert raw.min() < -100 and raw.max() > 100
    assert score.min() >= 0.0 and score.max() <= 100.0
    order = np.argsort(raw)
    assert np.all(np.diff(score[order]) >= 0)
    # Strictly increasing where it is not saturated.
    mid = np.abs(raw - 0.3) < 4
    assert np.all(np.diff(score[order][mid[order]]) > 0)
    # The formula in the docstring.
    a, c, m, s = LOGISTIC["params"]
    np.testing.assert_allclose(score, 100 * (a + (c - a) / (1 + np.exp(-(raw - m) / s))), rtol=1e-12, atol=1e-9)


def test_mapping_follows_the_range():
    h = make_head(mapping=LOGISTIC, range=(1.0, 5.0))
    s = h.predict(np.random.default_rng(3).normal(size=(50, 16)) * 100)
    assert s.min() >= 1.0 and s.max() <= 5.0


def test_version_2_round_trip_keeps_mapping_and_fit(tmp_path):
    fit = {"mos": {"data": "clive-train", "n": 930}, "pairs": 123, "loss": {"lam_rank": 1.0, "margin": 1.0},
           "np_float": np.float64(0.5)}
    h = make_head(mapping=LOGISTIC, fit=fit)
    h.save(tmp_path / "h.json")
    doc = json.loads((tmp_path / "h.json").read_text())
    assert doc["version"] == 2 and doc["mapping"] == LOGISTIC and doc["fit"]["pairs"] == 123
    back = LinearHead.load(tmp_path / "h.json")
    assert back.mapping == LOGISTIC and back.fit["loss"] == {"lam_rank": 1.0, "margin": 1.0}
    X = np.random.default_rng(4).normal(size=(7, 16))
    np.testing.assert_array_equal(back.predict(X), h.predict(X))
    np.testing.assert_array_equal(back.predict_raw(X), h.predict_raw(X))


def test_version_2_without_mapping_reads_as_identity(tmp_path):
    d = good_doc()
    d.update(version=2, mapping=None, fit=None)
    h = LinearHead.load(write_doc(tmp_path / "h.json", d))
    assert h.mapping is None
    np.testing.assert_array_equal(h.predict(np.ones(4)), h.predict_raw(np.ones(4)))


@pytest.mark.parametrize("mapping", [{"kind": "logistic", "params": [0.5, 0.5, 0, 1]}, {"params": [0, 1, 0, 1]},
                                     "logistic", {"kind": "logistic", "params": [0, 1, 0, float("inf")]}])
def test_bad_mapping_in_code_is_one_line_model_error(mapping):
    with pytest.raises(ModelError) as ei:
        make_head(mapping=mapping)
    assert "\n" not in str(ei.value) and "mapping" in str(ei.value)
