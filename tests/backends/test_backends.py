"""Encoder backends: ONNX export and ONNX Runtime against PyTorch, int8, torch.compile, the auto choice,
the export cache, and the errors for what a machine cannot run."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from media import make_clip

from contrique_video.api import Scorer, builtin_weights
from contrique_video.decode.prefetch import prefetch
from contrique_video.backends import cpu as cpu_mod
from contrique_video.backends import auto_choice, open_backend
from contrique_video.backends.bench import sample_frames
from contrique_video.backends.export import export_onnx, read_metadata
from contrique_video.backends.int8 import calibration_table, quantize_int8
from contrique_video.backends.onnx import OnnxRuntimeBackend
from contrique_video.backends.onnx_cache import cached_export
from contrique_video.backends.pytorch import TorchBackend
from contrique_video.errors import ModelError, UnsupportedError
from contrique_video.models import load_model as load_weights
from contrique_video.models.card import model_digest
from contrique_video.models.contrique import Contrique

BUILTIN = builtin_weights()


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Two natural frames of an odd size (the half scale rounds down), plus a different size."""
    return sample_frames(2, (97, 131)) + sample_frames(1, (120, 160))


@pytest.fixture(scope="module")
def reference(frames) -> np.ndarray:
    return TorchBackend(load_weights(BUILTIN), channels_last=False)(frames)


def test_onnxruntime_fp32_matches_torch(frames, reference):
    ort = open_backend(BUILTIN, "onnxruntime", "fp32")
    assert ort.describe() == "onnxruntime fp32"
    assert np.abs(ort(frames) - reference).max() <= 1e-4


def test_openvino_fp32_matches_torch_and_repeats_exactly(frames, reference):
    """fp32 whatever the CPU (OpenVINO would choose bf16 by itself on a bf16 CPU), and the same bits twice."""
    ov = open_backend(BUILTIN, "openvino")
    assert ov.describe() == "openvino fp32" and ov.inference_precision() == "f32"
    first = ov(frames)
    assert np.abs(first - reference).max() <= 1e-4
    assert np.array_equal(first, ov(frames))


@pytest.mark.skipif(not cpu_mod.native("bf16"), reason="this CPU has no bf16 instructions")
def test_openvino_bf16_runs_at_bf16_near_fp32(frames, reference):
    """Asked for, bf16 is what OpenVINO compiles (not silently fp32), and it stays close to fp32."""
    ov = open_backend(BUILTIN, "openvino", "bf16")
    assert ov.describe() == "openvino bf16" and ov.inference_precision() == "bf16"
    out = ov(frames)
    assert cosine(out, reference).min() > 0.999
    assert np.linalg.norm(out - reference) / np.linalg.norm(reference) < 0.05


def test_openvino_bf16_is_refused_where_it_would_be_emulated(monkeypatch):
    monkeypatch.setattr(cpu_mod, "cpu_flags", lambda: {"avx2", "fma"})
    with pytest.raises(UnsupportedError, match="supports precision fp32, not bf16"):
        open_backend(BUILTIN, "openvino", "bf16")


def test_openvino_bf16_is_refused_where_openvino_lists_no_bf16(monkeypatch):
    """The flags offer bf16, but an OpenVINO that would not run it natively is refused, not silently fp32."""
    from contrique_video.backends import openvino as openvino_mod

    monkeypatch.setattr(cpu_mod, "cpu_flags", lambda: {"avx2", "fma", "avx512f", "avx512_bf16"})
    monkeypatch.setattr(openvino_mod, "runs_bf16", lambda core: False)
    with pytest.raises(UnsupportedError, match="OpenVINO runs no bf16 on this CPU"):
        open_backend(BUILTIN, "openvino", "bf16")


def test_openvino_shared_between_threads_takes_turns(frames, reference):
    ov = open_backend(BUILTIN, "openvino")
    results = [None] * 4

    def work(i: int) -> None:
        results[i] = ov(frames)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r is not None and np.array_equal(r, results[0]) for r in results)


def test_openvino_missing_is_one_line_for_auto_to_skip(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    with pytest.raises(UnsupportedError, match="needs the openvino package"):
        open_backend(BUILTIN, "openvino")


def test_openvino_runs_an_fp32_onnx_file_and_refuses_int8(tmp_path, frames, reference):
    path = export_onnx(load_weights(BUILTIN), tmp_path / "m.onnx", source="x")
    assert np.abs(open_backend(path, "openvino")(frames) - reference).max() <= 1e-4
    with pytest.raises(UnsupportedError, match="supports precision fp32(, bf16)?, not int8"):
        open_backend(BUILTIN, "openvino", "int8")
    (tmp_path / "bad.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        open_backend(tmp_path / "bad.onnx", "openvino")


def test_channels_last_eager_matches_official_layout(frames, reference):
    # 1e-5 relative to the largest feature: the built-in Lite features are not L2-normalised (up to ~30)
    assert np.abs(TorchBackend(load_weights(BUILTIN))(frames) - reference).max() <= 1e-5 * max(1.0, np.abs(reference).max())


def test_int8_is_close_to_fp32(frames, tmp_path):
    """int8 on a ResNet (the built-in EfficientNet-Lite refuses it: tests/models/test_encoders.py), with a table
    computed from frames, then reused by the cached export."""
    from checkpoints import random_official_checkpoint

    random_official_checkpoint(tmp_path / "r18.pt", arch="resnet18")
    reference = TorchBackend(load_weights(tmp_path / "r18.pt"))(frames)
    table = calibration_table(tmp_path / "r18.pt", model_digest(tmp_path / "r18.pt"))
    quantize_int8(cached_export(tmp_path / "r18.pt", "fp32"), tmp_path / "q.onnx", table, frames)
    int8 = open_backend(tmp_path / "r18.pt", "onnxruntime", "int8")
    assert int8.precision == "int8"
    assert cosine(int8(frames), reference).min() > 0.99


def test_export_cache_is_reused_and_a_corrupt_file_rebuilt(caplog):
    path = cached_export(BUILTIN, "fp32")
    stamp = path.stat().st_mtime_ns
    assert cached_export(BUILTIN, "fp32") == path and path.stat().st_mtime_ns == stamp
    path.write_bytes(b"not an onnx file")
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        read_metadata(path)
    assert cached_export(BUILTIN, "fp32") == path
    assert read_metadata(path)["source"] == model_digest(BUILTIN)
    assert "rebuilding" in caplog.text


def test_export_of_other_weights_in_the_cache_slot_is_rebuilt(tmp_path, caplog):
    other = tmp_path / "r18.pt"
    torch.manual_seed(0)
    torch.save(Contrique("resnet18").state_dict(), other)
    slot = cached_export(BUILTIN, "fp32")
    shutil.copy(cached_export(other, "fp32"), slot)  # the right name, the wrong weights
    assert read_metadata(cached_export(BUILTIN, "fp32"))["source"] == model_digest(BUILTIN)
    assert "other weights" in caplog.text


def test_onnx_file_as_weights(tmp_path, frames, reference):
    path = export_onnx(load_weights(BUILTIN), tmp_path / "m.onnx", source="x")
    backend = open_backend(path)  # auto: an ONNX file runs on ONNX Runtime
    assert isinstance(backend, OnnxRuntimeBackend)
    assert np.abs(backend(frames) - reference).max() <= 1e-4
    with pytest.raises(UnsupportedError, match="ONNX file"):
        open_backend(path, "torch")
    with pytest.raises(UnsupportedError, match="fp32 export"):
        open_backend(path, "onnxruntime", "int8")


def test_int8_without_a_calibration_table_says_how_to_make_one(tmp_path):
    other = tmp_path / "r18.pt"
    torch.save(Contrique("resnet18").state_dict(), other)
    with pytest.raises(UnsupportedError, match="--calibrate"):
        open_backend(other, "onnxruntime", "int8")


def test_int8_table_for_other_layers_is_rejected(tmp_path):
    other = tmp_path / "r18.pt"
    torch.save(Contrique("resnet18").state_dict(), other)
    r34 = tmp_path / "r34.pt"
    torch.save(Contrique("resnet34").state_dict(), r34)
    table = tmp_path / "r34-table.json"
    quantize_int8(cached_export(r34, "fp32"), tmp_path / "q34.onnx", table, sample_frames(1, (64, 64)))
    with pytest.raises(ModelError, match="does not fit"):
        quantize_int8(cached_export(other, "fp32"), tmp_path / "q.onnx", table)
    assert not list(tmp_path.glob("*.partial"))


def test_unavailable_choices_name_what_is_available(monkeypatch):
    with pytest.raises(UnsupportedError, match="supports precision fp32"):
        open_backend(BUILTIN, "torch", "int8")
    with pytest.raises(UnsupportedError, match="fp32, int8"):
        open_backend(BUILTIN, "onnxruntime", "fp16")
    with pytest.raises(UnsupportedError, match="available: auto, torch"):
        open_backend(BUILTIN, "cuda-magic")
    monkeypatch.setattr(cpu_mod, "cpu_flags", lambda: {"avx2", "fma"})
    with pytest.raises(UnsupportedError, match="supports precision fp32, not bf16"):
        open_backend(BUILTIN, "torch", "bf16")


def test_auto_choice(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    assert auto_choice("cpu") == ("openvino", "fp32")
    monkeypatch.setattr(importlib.util, "find_spec", lambda n: None if n == "openvino" else real(n))
    assert auto_choice("cpu") == ("onnxruntime", "fp32")
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda n: None if n in ("tensorrt", "onnxruntime", "openvino") else real(n))
    assert auto_choice("cpu") == ("torch", "fp32")
    assert auto_choice("cuda") == ("torch", "fp16")
    monkeypatch.setattr(importlib.util, "find_spec", lambda n: object() if n == "tensorrt" else real(n))
    assert auto_choice("cuda") == ("tensorrt", "fp16")


@pytest.mark.skipif(not shutil.which("g++"), reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_matches_eager():
    torch.manual_seed(0)
    model = Contrique("resnet18")
    frames = sample_frames(2, (96, 128))
    eager = TorchBackend(model)(frames)
    compiled = TorchBackend(model, compile=True)
    assert compiled.describe() == "torch compiled fp32 on cpu"
    assert np.abs(compiled(frames) - eager).max() <= 1e-4


def test_score_record_names_the_backend(tmp_path):
    clip = tmp_path / "c.mp4"
    make_clip(clip, size=(128, 96), frames=6, content="gradient")
    eager = Scorer(backend="torch").score(clip)
    ort = Scorer(backend="onnxruntime").score(clip)
    assert eager.record()["backend"] == "torch eager fp32 on cpu"
    assert ort.record()["backend"] == "onnxruntime fp32"
    assert abs(eager.score - ort.score) < 1e-3


def test_cli_backend_errors_are_one_line(tmp_path):
    clip = tmp_path / "c.mp4"
    make_clip(clip, size=(128, 96), frames=3)
    run = subprocess.run([sys.executable, "-m", "contrique_video", "score", str(clip), "--backend", "tensorrt"],
                         capture_output=True, text=True)
    assert run.returncode == 1 and run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1 and "tensorrt" in run.stderr.lower()
    run = subprocess.run([sys.executable, "-m", "contrique_video", "score", str(clip), "--precision", "int4"],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "int4" in run.stderr


def test_export_onnx_command(tmp_path):
    out = tmp_path / "m.onnx"
    run = subprocess.run([sys.executable, "-m", "contrique_video", "-q", "export-onnx", "-o", str(out)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert read_metadata(out)["source"] == model_digest(BUILTIN)
    run = subprocess.run([sys.executable, "-m", "contrique_video", "export-onnx", "-o", str(out), "--calibrate", "x.mp4"],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "--precision int8" in run.stderr


def test_prefetch_passes_decoder_errors_and_stops_early():
    def frames():
        yield 1
        yield 2
        raise ValueError("broken stream")

    got = []
    with pytest.raises(ValueError, match="broken stream"):
        for f in prefetch(frames(), 1):
            got.append(f)
    assert got == [1, 2]
    before = threading.active_count()
    endless = prefetch(iter(range(10**9)), 2)
    assert next(endless) == 0
    endless.close()  # the consumer stops: the decoding thread must end too
    assert threading.active_count() == before


def test_bench_refuses_unknown_candidates_before_any_work():
    run = subprocess.run([sys.executable, "-m", "contrique_video", "bench", "--candidates", "onnxruntime:int4"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "int4" not in run.stdout and "precisions: fp32" in run.stderr


def test_bench_times_frames_of_the_size_asked_and_refuses_a_bad_one():
    from click.testing import CliRunner

    from contrique_video.cli import main

    res = CliRunner().invoke(main, ["bench", "--size", "96x64", "--frames", "1", "--repeats", "1", "--no-memory",
                                    "--candidates", "openvino:fp32"])
    assert res.exit_code == 0, res.output
    assert "| backend | s/frame (96x64, both scales) |" in res.output and "| openvino fp32 |" in res.output
    for bad in ("1080p", "96x8", "32x32", "0x0", "96x64x3", "\u00b2x720", "99999x100"):
        res = CliRunner().invoke(main, ["bench", "--size", bad])
        assert res.exit_code == 2 and "give WIDTHxHEIGHT" in res.output
