"""TensorRT backend: profiles, engine cache keys and sidecars, the rebuild decision, the errors for what a
machine lacks, and the fp16 graph (checked on ONNX Runtime CPU). Building and running engines needs an NVIDIA
GPU and TensorRT; those tests are skipped, with the reason, where either is missing."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from contrique_video.backends import fp16
from contrique_video.backends import tensorrt as trtb
from contrique_video.cache import cache_dir
from contrique_video.backends.bench import sample_frames
from contrique_video.backends.engine_cache import (
    Profile,
    engine_components,
    engine_key,
    engine_path,
    load_or_build,
    profiles_for,
    sidecar_problem,
    store_engine,
)
from contrique_video.backends.export import export_onnx, file_digest
from contrique_video.backends.onnx import OnnxRuntimeBackend
from contrique_video.backends.tensorrt import TensorRTBackend
from contrique_video.errors import ModelError, UnsupportedError
from contrique_video.models.contrique import Contrique
from contrique_video.models.transforms import half_scale, to_array

HAVE_GPU = torch.cuda.is_available()
HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
ENGINE_REASON = "building a TensorRT engine needs " + " and ".join(
    what for what, ok in (("an NVIDIA GPU", HAVE_GPU), ("TensorRT (pip install 'contrique-video[tensorrt]')", HAVE_TRT))
    if not ok) if not (HAVE_GPU and HAVE_TRT) else ""
needs_engine = pytest.mark.skipif(not (HAVE_GPU and HAVE_TRT), reason=ENGINE_REASON)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def resnet18_onnx(tmp_path_factory):
    torch.manual_seed(0)
    return export_onnx(Contrique("resnet18"), tmp_path_factory.mktemp("trt") / "r18.onnx", source="r18-test")


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    """Two natural frames at full scale (the half scale is covered by the engine tests)."""
    return np.stack([to_array(f) for f in sample_frames(2, (96, 128))])


# --------------------------------------------------------------------------- profiles


def test_profiles_cover_each_resolution_and_its_half_scale():
    profiles = profiles_for([(1080, 1920), (720, 1280), (540, 960)], max_batch=4)
    assert [(p.height, p.width) for p in profiles] == [(270, 480), (360, 640), (540, 960), (720, 1280), (1080, 1920)]
    assert profiles[0].shapes() == ((1, 3, 270, 480), (4, 3, 270, 480), (4, 3, 270, 480))
    odd = profiles_for([(97, 131)])
    assert [(p.height, p.width) for p in odd] == [(48, 65), (97, 131)]  # as half_scale rounds down
    assert half_scale(np.zeros((97, 131, 3), np.uint8)).shape[:2] == (48, 65)


def test_profile_covers_exact_size_and_batch_up_to_max():
    p = Profile(96, 128, 8)
    assert p.covers((1, 3, 96, 128)) and p.covers((8, 3, 96, 128))
    assert not p.covers((9, 3, 96, 128)) and not p.covers((1, 3, 128, 96)) and not p.covers((1, 1, 96, 128))


@pytest.mark.parametrize("resolutions, max_batch, message", [
    ([(32, 640)], 8, "too small"), ([], 8, "at least one resolution"), ([(720, 1280)], 0, "max_batch"),
])
def test_bad_profiles_are_refused(resolutions, max_batch, message):
    with pytest.raises(UnsupportedError, match=message):
        profiles_for(resolutions, max_batch)


# --------------------------------------------------------------------------- cache keys


BASE = dict(gpu="NVIDIA H100 80GB HBM3", compute_capability=(9, 0), trt_version="10.13.0.35",
            model_digest="c1f0f48a0aa3b2bb", precision="fp16", profiles=profiles_for([(1080, 1920)]))


def test_engine_key_is_stable():
    a = engine_components(**BASE)
    shuffled = dict(reversed(list(a.items())))
    assert engine_key(a) == engine_key(shuffled) == engine_key(engine_components(**BASE))
    assert len(engine_key(a)) == 16 and int(engine_key(a), 16) >= 0
    # Profile order does not matter either: they are sorted.
    assert engine_key(engine_components(**{**BASE, "profiles": BASE["profiles"][::-1]})) == engine_key(a)
    path = engine_path(a)
    assert path.parent.name == "engines" and path.name == f"c1f0f48a0aa3b2bb-fp16-{engine_key(a)}.engine"


@pytest.mark.parametrize("change", [
    {"gpu": "NVIDIA A100-SXM4-80GB"}, {"compute_capability": (8, 0)}, {"trt_version": "11.0.0.1"},
    {"model_digest": "0123456789abcdef"}, {"precision": "fp32"}, {"profiles": profiles_for([(720, 1280)])},
    {"profiles": profiles_for([(1080, 1920)], max_batch=4)},
])
def test_engine_key_changes_with_each_component(change):
    assert engine_key(engine_components(**{**BASE, **change})) != engine_key(engine_components(**BASE))


# --------------------------------------------------------------------------- sidecars and the rebuild decision


def test_sidecar_checks(tmp_path):
    comps = engine_components(**BASE)
    path = engine_path(comps, tmp_path)
    assert sidecar_problem(path, comps) == "no engine file"
    store_engine(path, b"engine bytes", comps)
    assert sidecar_problem(path, comps) is None
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["key"] == engine_key(comps) and side["components"] == comps and side["bytes"] == 12

    other = engine_components(**{**BASE, "trt_version": "10.9.0.34", "gpu": "NVIDIA L4"})
    assert sidecar_problem(path, other) == "it was built for another gpu, tensorrt"

    path.write_bytes(b"engine bytes, overwritten")
    assert "bytes, not the 12" in sidecar_problem(path, comps)
    path.write_bytes(b"engine bytez")  # same size, other content
    assert sidecar_problem(path, comps) == "the engine file does not match its checksum"

    path.with_suffix(".json").write_text("{not json")
    assert "missing or unreadable" in sidecar_problem(path, comps)
    path.with_suffix(".json").unlink()
    assert "missing or unreadable" in sidecar_problem(path, comps)


def test_load_or_build_reuses_rebuilds_and_never_uses_a_bad_engine(tmp_path, caplog):
    comps = engine_components(**BASE)
    builds: list[int] = []

    def build() -> bytes:
        builds.append(1)
        return b"good engine"

    def deserialize(data: bytes):
        return ("engine", data) if data == b"good engine" else None

    assert load_or_build(comps, build, deserialize, tmp_path) == ("engine", b"good engine") and len(builds) == 1
    assert load_or_build(comps, build, deserialize, tmp_path) == ("engine", b"good engine") and len(builds) == 1

    path = engine_path(comps, tmp_path)
    path.write_bytes(b"bad engine!")  # corrupt, same size: the checksum catches it
    with caplog.at_level(logging.WARNING, logger="contrique_video"):
        assert load_or_build(comps, build, deserialize, tmp_path) == ("engine", b"good engine")
    assert len(builds) == 2 and "does not match its checksum; rebuilding it" in caplog.text

    store_engine(path, b"stale engine", comps)  # sidecar in order, but TensorRT would reject the bytes
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="contrique_video"):
        assert load_or_build(comps, build, deserialize, tmp_path) == ("engine", b"good engine")
    assert len(builds) == 3 and "TensorRT cannot deserialise it; rebuilding it" in caplog.text

    with pytest.raises(ModelError, match="cannot load back"):
        load_or_build(engine_components(**{**BASE, "precision": "fp32"}), lambda: b"junk", deserialize, tmp_path)
    assert not engine_path(engine_components(**{**BASE, "precision": "fp32"}), tmp_path).exists()


# --------------------------------------------------------------------------- versions and errors


@pytest.mark.parametrize("version, precision, flag", [
    ("10.13.0.35", "fp16", True), ("10.0.1", "fp32", False), ("11.0.0.114", "fp16", False), ("11.4.1", "fp32", False),
])
def test_fp16_flag_only_on_tensorrt_10(version, precision, flag):
    assert trtb.uses_fp16_flag(version, precision) is flag


def test_missing_tensorrt_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # what an uninstalled package looks like to import
    with pytest.raises(UnsupportedError, match=r"pip install 'contrique-video\[tensorrt\]'"):
        trtb.import_tensorrt()


@pytest.mark.parametrize("precision", ["int8", "bf16", "auto"])
def test_unavailable_precision_names_the_available_ones(resnet18_onnx, precision):
    with pytest.raises(UnsupportedError, match=f"supports precision fp16, fp32, not {precision}"):
        TensorRTBackend(resnet18_onnx, precision=precision)


def test_cpu_device_is_refused(resnet18_onnx):
    with pytest.raises(UnsupportedError, match="runs on CUDA only.*--device cuda"):
        TensorRTBackend(resnet18_onnx, device="cpu")


@pytest.mark.skipif(HAVE_GPU, reason="this machine has a CUDA GPU")
def test_no_gpu_is_a_clear_error(resnet18_onnx):
    with pytest.raises(UnsupportedError, match="needs a CUDA GPU.*available here"):
        TensorRTBackend(resnet18_onnx)


# --------------------------------------------------------------------------- the fp16 graph, on ONNX Runtime


def run_ort(path, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]


def test_fp16_graph_matches_fp32_on_onnxruntime(resnet18_onnx, batch, tmp_path):
    out = fp16.convert_to_fp16(resnet18_onnx, tmp_path / "r18-fp16.onnx")
    proto = onnx.load(str(out))
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert proto.graph.input[0].type.tensor_type.elem_type == f32
    assert proto.graph.output[0].type.tensor_type.elem_type == f32
    assert {t.data_type for t in proto.graph.initializer} == {f16}  # every weight is fp16
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["precision"] == "fp16" and meta["fp32_onnx"] == file_digest(resnet18_onnx)
    assert meta["source"] == "r18-test"
    ref, got = run_ort(resnet18_onnx, batch), run_ort(out, batch)
    assert got.dtype == np.float32 and got.shape == ref.shape == (2, 512)
    assert cosine(got, ref).min() >= 0.999
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # the normalisation ran in fp32


def test_fp16_graph_of_the_builtin_model(batch, tmp_path):
    from contrique_video.api import builtin_weights
    from contrique_video.models import load_model

    fp32 = export_onnx(load_model(builtin_weights()), tmp_path / "builtin.onnx")
    got = run_ort(fp16.convert_to_fp16(fp32, tmp_path / "builtin-fp16.onnx"), batch)
    assert cosine(got, run_ort(fp32, batch)).min() >= 0.999


def test_fp16_cache_is_reused_and_a_stale_copy_remade(resnet18_onnx, caplog):
    path = fp16.cached_fp16(resnet18_onnx)
    stamp = path.stat().st_mtime_ns
    assert fp16.cached_fp16(resnet18_onnx) == path and path.stat().st_mtime_ns == stamp
    path.write_bytes(b"not onnx")
    with caplog.at_level(logging.WARNING, logger="contrique_video"):
        assert fp16.cached_fp16(resnet18_onnx) == path
    assert "remaking it" in caplog.text and onnx.load(str(path)).graph.node


def test_fp16_refuses_a_non_fp32_export(resnet18_onnx, tmp_path):
    half = fp16.convert_to_fp16(resnet18_onnx, tmp_path / "h.onnx")
    with pytest.raises(ModelError, match="fp16 export"):
        fp16.convert_to_fp16(half, tmp_path / "hh.onnx")


# --------------------------------------------------------------------------- engines (GPU + TensorRT only)


@needs_engine
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_engine_features_match_onnxruntime(resnet18_onnx, precision):
    frames = sample_frames(3, (96, 128)) + sample_frames(1, (120, 160))
    ref = OnnxRuntimeBackend(resnet18_onnx)(frames)
    backend = TensorRTBackend(resnet18_onnx, precision=precision, resolutions=[(96, 128)], max_batch=2)
    got = backend(frames)  # 120x160 has no profile yet: an engine is built for it on the way
    assert got.shape == ref.shape
    assert cosine(got, ref).min() >= (0.999 if precision == "fp16" else 0.9999)  # fp32 may use TF32


@needs_engine
def test_engine_cache_is_reused_and_a_corrupt_engine_rebuilt(resnet18_onnx, caplog):
    TensorRTBackend(resnet18_onnx, resolutions=[(64, 64)])
    engines = sorted((cache_dir() / "engines").glob("*.engine"))
    with caplog.at_level(logging.INFO, logger="contrique_video"):
        TensorRTBackend(resnet18_onnx, resolutions=[(64, 64)])
    assert "loaded from the cache" in caplog.text
    victim = next(p for p in engines if json.loads(p.with_suffix(".json").read_text())["components"]["profiles"]
                  == [[32, 32, 8], [64, 64, 8]])
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="contrique_video"):
        backend = TensorRTBackend(resnet18_onnx, resolutions=[(64, 64)])
    assert "does not match its checksum; rebuilding it" in caplog.text
    assert backend(sample_frames(1, (64, 64))).shape == (1, 1024)


# --------------------------------------------------------------------------- trt/build_engine.py


def build_engine_main():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "trt" / "build_engine.py"
    spec = importlib.util.spec_from_file_location("build_engine", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_build_engine_script_help_and_errors(capsys):
    main = build_engine_main()
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0 and "--resolution WxH" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["--resolution", "1920by1080"])
    assert exit_.value.code == 2 and "WIDTHxHEIGHT" in capsys.readouterr().err
    if not (HAVE_GPU and HAVE_TRT):
        assert main(["--resolution", "1920x1080"]) == 1
        assert capsys.readouterr().err.startswith("error: the tensorrt backend needs")
