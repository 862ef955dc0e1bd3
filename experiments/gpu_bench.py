"""One prepared GPU benchmark (issue #14): PyTorch on CUDA for the official-layout ResNet-50 and the built-in model.
Answered: prepared for issue #14's GPU targets; not yet run on a GPU (its CPU --tiny mode ran).

For each model and each path (fp32, fp16 and bf16 autocast, channels_last; eager, ``torch.compile``, and
CUDA graphs of the eager bf16/fp16 model) it reports 1080p frames per second (both scales, one frame at a time
and in batches of ``--batch``), the share of the GPU's measured matmul peak at that precision (a large
square matmul, measured in the same process), and the minimum cosine of the features against CPU fp32.

    python experiments/gpu_bench.py --device cuda -o gpu_bench.json                # on a machine with an NVIDIA GPU
    python experiments/gpu_bench.py --device cpu --tiny                            # every CPU path, small

``--resnet CHECKPOINT`` times official CONTRIQUE weights; without it a random-init ResNet-50 is timed (speed
does not depend on the weights; the cosine then says little). ``--tiny`` shrinks frames to 96x160, one
repeat, no compile, for checking the script up to the GPU boundary. PyAV is not needed (no decoding here):
frames are made in memory.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from contrique_video.timing import round_robin, time_call


def frames(n: int, size: tuple[int, int]) -> list[np.ndarray]:
    """Deterministic textured RGB frames (smooth pattern plus noise)."""
    rng = np.random.default_rng(0)
    h, w = size
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    out = []
    for k in range(n):
        base = 0.5 + 0.3 * np.sin(7 * x + 3 * y + k)[..., None] * np.array([1.0, 0.7, 0.5])
        out.append(np.clip(255 * (base + 0.1 * rng.standard_normal((h, w, 3))), 0, 255).astype(np.uint8))
    return out


def scales(rgb: list[np.ndarray]):
    """The two inputs per frame as the package makes them: full scale and PIL's bicubic half scale, [0, 1] NCHW."""
    import torch

    from contrique_video.models.transforms import half_scale, to_array

    full = torch.from_numpy(np.stack([to_array(f) for f in rgb]))
    half = torch.from_numpy(np.stack([to_array(half_scale(f)) for f in rgb]))
    return full, half


def matmul_peak(device, dtype, n: int, repeats: int) -> float:
    import torch

    a = torch.rand(n, n, device=device, dtype=dtype)
    b = torch.rand(n, n, device=device, dtype=dtype)
    best = time_call(lambda: a @ b, repeats, sync=lambda: sync(device)).best
    return 2 * n**3 / best / 1e9


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gflop(model, size) -> float:
    from contrique_video.backends.bench import network_gflop

    return network_gflop(tuple(size), model)


class Path_:
    """One way to run a model: precision, compiled or not, CUDA graph or not."""

    def __init__(self, model, device, precision: str, mode: str):
        import torch

        self.name = f"{mode} {precision}"
        self.device, self.precision, self.mode = device, precision, mode
        self.dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        self.model = model.to(device, memory_format=torch.channels_last).eval()
        self.fn = torch.compile(self.model) if mode == "compiled" else self.model
        self.graphs: dict = {}

    def _eager(self, x):
        import torch

        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            return self.fn(x).float()

    def __call__(self, x):
        import torch

        if self.mode != "cuda-graph":
            return self._eager(x.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last))
        key = tuple(x.shape)
        if key not in self.graphs:  # capture once per input shape on a static input buffer
            static = x.to(self.device).contiguous(memory_format=torch.channels_last)
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):
                    self._eager(static)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = self._eager(static)
            self.graphs[key] = (graph, static, out)
        graph, static, out = self.graphs[key]
        static.copy_(x, non_blocking=True)
        graph.replay()
        return out.clone()


def run_model(name, model_fn, args, device, peaks, test):
    import torch

    cpu_model = model_fn().eval()
    size = test[0][0].shape[2:]
    work = gflop(cpu_model, tuple(size))
    with torch.inference_mode():  # the reference: CPU fp32, NCHW, as the official code
        ref = torch.cat([cpu_model(test[0][0]), cpu_model(test[0][1])], dim=1).numpy()
    modes = ["eager"] + ([] if args.tiny else ["compiled"]) + (["cuda-graph"] if device.type == "cuda" else [])
    precisions = ["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    rows = []
    for mode in modes:
        for precision in precisions:
            if mode == "cuda-graph" and precision == "fp32":
                continue
            try:
                path = Path_(model_fn(), device, precision, mode)
                rows.append(time_path(path, test, args, work, peaks, ref))
            except Exception as exc:  # one failing path (e.g. no bf16 on an old GPU) is reported, not fatal
                rows.append({"path": path.name if "path" in locals() else f"{mode} {precision}",
                             "error": str(exc).splitlines()[0][:200]})
            print(json.dumps({"model": name, **rows[-1]}), file=sys.stderr, flush=True)
    return {"model": name, "gflop_per_frame": work, "rows": rows}


def time_path(path, test, args, work, peaks, ref) -> dict:
    single, batch = test
    for x in (*single, *batch):  # warm-up: compile, capture, cudnn autotuning
        path(x)
    sizes = {"1": (single, 1), str(args.batch): (batch, args.batch)}
    both = {key: lambda full=full, half=half: (path(full), path(half)) for key, ((full, half), _) in sizes.items()}
    timed = round_robin(both, args.repeats, warmup=0, sync=lambda: sync(path.device))
    best = {key: timed[key].best / n for key, (_, n) in sizes.items()}
    feats = np.concatenate([path(single[0]).cpu().numpy(), path(single[1]).cpu().numpy()], axis=1)
    cos = float(((feats * ref).sum(1) / (np.linalg.norm(feats, axis=1) * np.linalg.norm(ref, axis=1))).min())
    fastest = min(best.values())
    peak = peaks[path.precision]
    return {"path": path.name, "frames_per_s_batch1": 1 / best["1"], f"frames_per_s_batch{args.batch}": 1 / best[str(args.batch)],
            "gflops": work / fastest, "peak_fraction": work / fastest / peak, "min_cosine_vs_cpu_fp32": cos}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="small frames, no compile: checks the script on a CPU")
    ap.add_argument("--resnet", type=Path, help="official CONTRIQUE checkpoint (default: random-init ResNet-50)")
    ap.add_argument("--models", default="resnet50,builtin")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("-o", "--output", type=Path)
    args = ap.parse_args(argv)

    import torch

    from contrique_video.models import load_model
    from contrique_video.models.contrique import Contrique, load_weights

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: PyTorch sees no CUDA GPU")
    if args.tiny:
        args.repeats, args.batch = 1, 2
    size = (96, 160) if args.tiny else (1080, 1920)
    n = 64 if args.tiny else 8192
    peaks = {p: matmul_peak(device, d, n, 1 if args.tiny else 5)
             for p, d in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16))
             if device.type == "cuda" or p != "fp16"}
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 here; TF32 would be another precision
        torch.backends.cudnn.allow_tf32 = False
    test = (scales(frames(2, size)), scales(frames(args.batch, size)))
    test = ([test[0][0][:1], test[0][1][:1]], list(test[1]))
    card = Path(__file__).resolve().parents[1] / "contrique_video" / "assets" / "builtin.json"
    builders = {"resnet50": (lambda: load_weights(args.resnet)) if args.resnet else (lambda: _random_resnet(Contrique)),
                "builtin": lambda: load_model(card)}
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "frame": f"{size[1]}x{size[0]}", "peak_gflops": peaks,
              "resnet_weights": str(args.resnet) if args.resnet else "random init (speed only)",
              "models": [run_model(m, builders[m], args, device, peaks, test) for m in args.models.split(",")]}
    text = json.dumps(result, indent=1)
    if args.output:
        args.output.write_text(text)
    print(text)
    return 0


def _random_resnet(cls):
    import torch

    torch.manual_seed(0)
    return cls("resnet50")


if __name__ == "__main__":
    raise SystemExit(main())
