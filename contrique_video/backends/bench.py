"""The speed and accuracy benchmark behind ``contrique-video bench`` and the README's backend table.

Everything is measured in one process against a baseline measured in the same run (eager PyTorch fp32,
the official path, and a large matmul for the machine's peak), because absolute times on a shared machine
drift from run to run; the ratios are what the README reports.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from contrique_video.backends import auto_choice, open_backend, paths
from contrique_video.backends.base import Backend
from contrique_video.backends.cpu import RELEVANT_FLAGS, cpu_flags, cpu_summary, native, torch_threads
from contrique_video.backends.pytorch import TorchBackend
from contrique_video.errors import ContriqueError
from contrique_video.models import resolve_model
from contrique_video.timing import round_robin, time_call

log = logging.getLogger("contrique_video")
FULL_HD = (1080, 1920)


@dataclass
class Row:
    backend: str
    seconds_per_frame: float
    speedup: float
    gflops: float
    peak_fraction: float
    feature_rel_error: float
    min_cosine: float


def sample_frames(n: int, size: tuple[int, int] = FULL_HD) -> list[np.ndarray]:
    """Natural-looking frames: a scikit-image photo, panned and scaled to ``size``, the same every run."""
    from PIL import Image
    from skimage import data

    h, w = size
    photo = Image.fromarray(data.astronaut()).resize((w + 64 * n, h + 32 * n), Image.Resampling.BICUBIC)
    return [np.asarray(photo.crop((64 * k, 32 * k, 64 * k + w, 32 * k + h))) for k in range(n)]


def write_clip(path: Path, seconds: int, size: tuple[int, int], fps: int = 24) -> Path:
    """An H.264 clip of a slow pan over a photo, ``size`` (H, W) (for the memory check: only its length matters)."""
    import av

    h, w = size
    pan = sample_frames(2, (h, w))[0]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "28", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for k in range(seconds * fps):
            shift = k % w
            rgb = np.ascontiguousarray(np.roll(pan, shift, axis=1))
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode(None))
    return path


def network_gflop(size: tuple[int, int], model=None) -> float:
    """GFLOP of one frame through the encoder at full and half scale (convolutions and matmuls, 2 per MAC);
    ``model`` defaults to CONTRIQUE's ResNet-50."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from contrique_video.models.contrique import Contrique

    model = (model or Contrique("resnet50")).eval()
    total = 0
    for h, w in (size, (size[0] // 2, size[1] // 2)):
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model(torch.zeros(1, 3, h, w))
        total += counter.get_total_flops()
    return total / 1e9


def matmul_peak(dtype: str = "fp32", n: int = 4096, repeats: int = 5) -> float:
    """The machine's attainable GFLOP/s: the best of several large square matmuls with PyTorch's BLAS."""
    import torch

    dt = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    a, b = torch.rand(n, n, dtype=dt), torch.rand(n, n, dtype=dt)
    best = time_call(lambda: a @ b, repeats).best
    return 2 * n**3 / best / 1e9


def int8_peak(n: int = 2048, repeats: int = 5) -> float:
    """Attainable int8 GOP/s: ONNX Runtime's u8 x s8 MatMulInteger, the kernels its int8 convolutions use."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.integers(-64, 64, (n, n), dtype=np.int8), "B")
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "peak",
                              [helper.make_tensor_value_info("A", TensorProto.UINT8, [n, n])],
                              [helper.make_tensor_value_info("Y", TensorProto.INT32, [n, n])], [weight])
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch_threads()
    session = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
                                   .SerializeToString(), options, providers=["CPUExecutionProvider"])
    a = {"A": rng.integers(0, 255, (n, n), dtype=np.uint8)}
    best = time_call(lambda: session.run(None, a), repeats).best
    return 2 * n**3 / best / 1e9


def time_backends(backends: list[Backend], frames: list[np.ndarray], repeats: int) -> list[tuple[float, np.ndarray]]:
    """Best seconds per frame (both scales, preprocessing included) and the features, for each backend.

    Each is warmed up first (compiles, allocations, engine builds); then the repeats go round-robin over
    the backends, so a slow spell on a shared machine hits all of them rather than one.
    """
    for backend in backends:
        backend(frames[:1])
    timed = round_robin({i: lambda b=b: np.vstack([b([f]) for f in frames]) for i, b in enumerate(backends)},
                        repeats, warmup=0, per=len(frames))
    return [(t.best, t.result) for t in timed.values()]


def feature_error(features: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    rel = float(np.linalg.norm(features - reference) / np.linalg.norm(reference))
    cos = np.sum(features * reference, axis=1) / (np.linalg.norm(features, axis=1) * np.linalg.norm(reference, axis=1))
    return rel, float(cos.min())


def default_candidates(weights: Path, threads: int | None) -> list[tuple[str, str]]:
    """auto's choice for ``weights``, then every other path this install offers on the CPU (the registry's)."""
    return list(dict.fromkeys([auto_choice("cpu", weights, threads), *paths("cpu")]))


def speed_table(weights: Path, candidates: list[tuple[str, str]], frames: int, repeats: int,
                threads: int | None, size: tuple[int, int] = FULL_HD) -> tuple[list[Row], dict]:
    """Time eager fp32 and each candidate (backend, precision) on the same frames of ``size`` (H, W), for a
    checkpoint or card."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    test = sample_frames(frames, size)
    model = resolve_model(weights)
    gflop = network_gflop(size, model.load())
    peaks = {"fp32": matmul_peak("fp32"), "int8": int8_peak()}
    if native("bf16"):
        peaks["bf16"] = matmul_peak("bf16")
    # The official code's eager NCHW fp32 is the baseline.
    backends = [TorchBackend(model.load(), channels_last=False, preprocess=model.preprocess)]
    for name, precision in candidates:
        try:
            backends.append(open_backend(model, name, precision, "cpu", threads))
        except ContriqueError as exc:  # a backend this machine lacks is reported, not fatal
            log.warning("skipping %s %s: %s", name, precision, exc)
    timings = time_backends(backends, test, repeats)
    base, reference = timings[0]
    rows = []
    for backend, (seconds, features) in zip(backends, timings):
        rel, cos = feature_error(features, reference)
        gflops = gflop / seconds
        rows.append(Row(backend.describe(), seconds, base / seconds, gflops,
                        gflops / peaks.get(backend.precision, peaks["fp32"]), rel, cos))
    return rows, {"size": f"{size[1]}x{size[0]}", "gflop_per_frame": gflop, "peak_gflops": peaks,
                  "threads": torch_threads(),
                  "cpu_flags": [f for f in RELEVANT_FLAGS if f in cpu_flags()], "cpu": cpu_summary()}


_MEASURED_RUN = """
import resource, sys
from contrique_video.cli import main
try:
    main(sys.argv[1:])
finally:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def peak_rss_mib(args: list[str]) -> float:
    """Peak resident memory of one ``contrique-video`` run, reported by the child itself (Linux: KiB)."""
    run = subprocess.run([sys.executable, "-c", _MEASURED_RUN, "-q", *args], capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"contrique-video {' '.join(args)} failed: {run.stderr.strip()[-300:]}")
    return int(run.stderr.strip().splitlines()[-1]) / 1024


def memory_check(backend: str, precision: str) -> dict:
    """Peak memory scoring a 10 s and a 60 s clip (1 frame per second scored), and one 4K frame, each in a
    process of its own."""
    opts = ["--backend", backend, "--precision", precision]
    with tempfile.TemporaryDirectory() as tmp:
        short, long, uhd = (Path(tmp) / n for n in ("10s.mp4", "60s.mp4", "4k.png"))
        write_clip(short, 10, (360, 640))
        write_clip(long, 60, (360, 640))
        from PIL import Image

        Image.fromarray(sample_frames(1, (2160, 3840))[0]).save(uhd)
        rss_short = peak_rss_mib(["score", str(short), "--fps", "1", *opts])
        rss_long = peak_rss_mib(["score", str(long), "--fps", "1", *opts])
        rss_4k = peak_rss_mib(["score", str(uhd), *opts])
    return {"peak_rss_mib_10s": rss_short, "peak_rss_mib_60s": rss_long, "growth": rss_long / rss_short - 1,
            "peak_rss_mib_4k_frame": rss_4k}


def markdown(rows: list[Row], info: dict) -> str:
    size = "1080p" if info["size"] == "1920x1080" else info["size"]
    lines = [f"| backend | s/frame ({size}, both scales) | vs official eager fp32 | GFLOP/s | of peak at its precision | feature error | min cosine |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.backend} | {r.seconds_per_frame:.2f} | {r.speedup:.2f}x | {r.gflops:.0f} | "
                     f"{100 * r.peak_fraction:.0f}% | {r.feature_rel_error:.1e} | {r.min_cosine:.5f} |")
    peaks = ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in info["peak_gflops"].items())
    lines.append(f"\n{info['gflop_per_frame']:.0f} GFLOP per frame; measured peaks (large matmuls): {peaks}; "
                 f"{info['threads']} threads; CPU: {info['cpu']}")
    return "\n".join(lines)


def run(weights: Path, candidates: list[tuple[str, str]], frames: int = 3, repeats: int = 2, threads: int | None = None,
        accuracy: Callable[[list[tuple[str, str]]], dict[str, dict]] | None = None, memory: bool = True,
        speed: bool = True, size: tuple[int, int] = FULL_HD) -> dict:
    """The benchmark's parts; returns a JSON-ready dict, with the speed table as markdown under ``"table"``.

    ``accuracy`` measures score changes of reduced-precision paths against fp32 (e.g.
    :func:`contrique_video.training.precision.precision_check` on a MOS set); the bench passes it the paths."""
    result: dict = {}
    if speed:
        rows, info = speed_table(weights, candidates, frames, repeats, threads, size)
        result = {"rows": [asdict(r) for r in rows], **info, "table": markdown(rows, info)}
    if accuracy:
        # The default path and every reduced precision; other fp32 paths match eager to ~1e-6 in features.
        checked = [candidates[0]] + [c for c in candidates[1:] if c[1] != "fp32"]
        result["accuracy"] = accuracy(checked)
    if memory:
        result["memory"] = memory_check(*candidates[0])
    return result


def compare_models(models: dict[str, Path], backend: str = "auto", precision: str = "auto", frames: int = 3,
                   repeats: int = 2, threads: int | None = None) -> list[dict]:
    """Seconds per 1080p frame (both scales) of several models on one backend, timed round-robin in one process;
    ``speedup`` is against the first model, the baseline of the same run."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    test = sample_frames(frames)
    resolved = [resolve_model(path) for path in models.values()]
    backends = [open_backend(model, backend, precision, "cpu", threads) for model in resolved]
    timings = time_backends(backends, test, repeats)
    base = timings[0][0]
    return [{"model": name, "backend": b.describe(), "seconds_per_frame": t, "speedup": base / t,
             "gflop_per_frame": network_gflop(FULL_HD, model.load())}
            for name, model, b, (t, _) in zip(models, resolved, backends, timings)]
