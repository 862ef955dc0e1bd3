"""Where OpenVINO bf16 moves the built-in model's scores, and what keeping parts of it in fp32 costs.

Against OpenVINO fp32 (the shipped pooled graph, equal to eager fp32 to ~1e-6), with the default head:

1. **Per feature block** (stage 1-7, head map, quality branch; mean and std; full and half scale), on ``--images``
   CLIVE images (the first of the precision check's subset: every 2nd row of clive-train's mos.csv): the median
   relative error of the bf16 graph's features and the block's share of the score change (``w_block . df``).
2. **Pooling out of the graph**: a graph that returns the unpooled maps, compiled at bf16 and pooled here in
   float64. Equal scores to the in-graph bf16 pooling say the error is the convolutions', not the pooling's.
3. **Per-node fp32 marks**: every op marked with rt_info ``disable_fp16_compression_0`` (the Python form of
   ``ov::disable_fp16_compression``), compiled at bf16: whether OpenVINO's CPU plugin keeps them in fp32.
4. **An fp32 front**: the stem and the first ``k`` MBConv blocks compiled at fp32, the rest (with the branch) at
   bf16, as two compiled models (features pooled in each graph): score change on the CLIVE images and on
   ``--mosaics`` 1080p frames (4x3 CLIVE images of the other rows, each at its own pixel scale, so detail is
   natural), and CPU seconds per 1080p frame (both scales, best of 3) against fp32 in the same run.

Writes results/bf16-sources.csv (date, CPU, flags, commit, command, variant, inputs, metric, value, ratio).

    python experiments/bf16_error_sources.py [--images 60] [--mosaics 12] [--splits 0,1,2,4] [--threads 1]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import time
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contrique_video.api import builtin_weights, default_head  # noqa: E402
from contrique_video.backends.cpu import RELEVANT_FLAGS, read_cpuinfo  # noqa: E402
from contrique_video.backends.openvino import COMPILE_OPTIONS, PRECISION_OPTIONS, cached_ir  # noqa: E402
from contrique_video.models import resolve_model  # noqa: E402
from contrique_video.models.head import resolve_head  # noqa: E402

CLIVE = ROOT.parent / "shared" / "data" / "clive-train"
BLOCKS = [f"stage{i}" for i in range(1, 8)] + ["head", "branch"]
FIELDS = ["date", "cpu", "flags", "commit", "command", "variant", "inputs", "metric", "value", "ratio"]


def meanstd(f: torch.Tensor) -> list[torch.Tensor]:
    return [f.mean(dim=(2, 3)), f.std(dim=(2, 3), unbiased=False)]


class Maps(torch.nn.Module):
    """The built-in encoder without its pooling: the 8 trunk maps and the branch's last map."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        maps = self.net.trunk.stages(x)
        return (*maps, self.net.branch.body(maps[self.net.branch.tap - 1]))


class Front(torch.nn.Module):
    """Stem and MBConv blocks ``[0, k)``: the pooled features of the stages that end there, and the last map."""

    def __init__(self, net, k: int):
        super().__init__()
        self.trunk, self.k = net.trunk, k

    def forward(self, x):
        t = self.trunk
        x = F.relu6(t._bn0(t._conv_stem(t.normalise(x))))
        parts = [x.mean(dim=(2, 3))[:, :0]]
        for i, block in enumerate(t._blocks[: self.k]):
            x = block(x)
            if i in t.stage_ends:
                parts += meanstd(x)
        return torch.cat(parts, 1), x


class Back(torch.nn.Module):
    """Blocks ``[k, end)``, the head map and the branch (on stage 2's map, which may be the input): pooled."""

    def __init__(self, net, k: int):
        super().__init__()
        self.net, self.k = net, k

    def forward(self, x):
        t, parts, tap = self.net.trunk, [], x
        for i, block in enumerate(t._blocks):
            if i >= self.k:
                x = block(x)
                parts += meanstd(x) if i in t.stage_ends else []
            if i == t.stage_ends[self.net.branch.tap - 1]:
                tap = x
        parts += meanstd(F.relu6(t._bn1(t._conv_head(x)))) + meanstd(self.net.branch.body(tap))
        return torch.cat(parts, 1)


def convert(module: torch.nn.Module, channels: int):
    import openvino as ov

    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(module.eval(), (torch.zeros(1, channels, 64, 64),), buffer, dynamo=False, opset_version=17,
                          input_names=["x"], dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})
    return ov.convert_model(io.BytesIO(buffer.getvalue()))


def pool(maps: list[np.ndarray]) -> np.ndarray:
    parts = []
    for m in maps:
        m = m.astype(np.float64).reshape(m.shape[0], m.shape[1], -1)
        parts += [m.mean(axis=2), m.std(axis=2)]
    return np.concatenate(parts, axis=1)


def variants(net, ir: Path, splits: list[int], threads: int) -> dict:
    """Name -> function from one 1x3xHxW input to its pooled features (one scale)."""
    import openvino as ov

    core = ov.Core()
    opts = {**COMPILE_OPTIONS, "INFERENCE_NUM_THREADS": threads}

    def compiled(model, precision):
        return core.compile_model(model, "CPU", {**opts, **PRECISION_OPTIONS[precision]})

    whole = {p: compiled(core.read_model(str(ir)), p) for p in ("fp32", "bf16")}
    marked = core.read_model(str(ir))
    for op in marked.get_ordered_ops():
        op.get_rt_info()["disable_fp16_compression_0"] = ""
    maps = compiled(convert(Maps(net), 3), "bf16")
    out = {"fp32": lambda x: whole["fp32"]({"image": x})[0], "bf16": lambda x: whole["bf16"]({"image": x})[0],
           "bf16, every op marked fp32": (lambda m: lambda x: m({"image": x})[0])(compiled(marked, "bf16")),
           "bf16 maps, float64 pooling": lambda x: pool([(r := maps({"x": x}))[o] for o in maps.outputs])}
    widths = [32, *(b._project_conv.out_channels for b in net.trunk._blocks)]
    for k in splits:
        assert k <= net.trunk.stage_ends[net.branch.tap - 1] + 1, "Back reads the branch's map from its input"
        front, back = compiled(convert(Front(net, k), 3), "fp32"), compiled(convert(Back(net, k), widths[k]), "bf16")

        def run(x, front=front, back=back):
            result = front({"x": x})
            pooled, last = (result[o] for o in front.outputs)
            return np.concatenate([pooled, back({"x": last})[0]], axis=1)

        out[f"fp32 stem + {k} blocks, bf16 rest"] = run
    return out


def clive_names(rows: slice) -> list[str]:
    return [ln.split(",")[0] for ln in (CLIVE / "mos.csv").read_text().splitlines()[1:]][rows]


def mosaics(n: int) -> list[np.ndarray]:
    """1080p frames of 4x3 CLIVE images (odd rows of mos.csv, each resized to 500x500 if it is not)."""
    names, frames = clive_names(slice(1, None, 2)), []
    for j in range(n):
        tiles = [np.asarray(Image.open(CLIVE / "images" / m).convert("RGB").resize((500, 500)))
                 for m in names[12 * j: 12 * j + 12]]
        grid = np.concatenate([np.concatenate(tiles[4 * r: 4 * r + 4], axis=1) for r in range(3)], axis=0)
        frames.append(np.ascontiguousarray(grid[:1080, :1920]))
    return frames


def features(run, frames, preprocess) -> np.ndarray:
    return np.array([np.concatenate([run(x[None]) for x in preprocess(rgb)], axis=1)[0] for rgb in frames],
                    dtype=np.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=60)
    ap.add_argument("--mosaics", type=int, default=12)
    ap.add_argument("--splits", default="0,1,2,4", help="fp32 fronts: the stem and this many MBConv blocks")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "results" / "bf16-sources.csv")
    args = ap.parse_args()
    model = resolve_model(builtin_weights())
    net = model.load().requires_grad_(False)
    head = resolve_head(default_head())
    runs = variants(net, cached_ir(model), [int(k) for k in args.splits.split(",")], args.threads)
    images = [np.asarray(Image.open(CLIVE / "images" / n).convert("RGB"))
              for n in clive_names(slice(0, None, 2))[: args.images]]
    sets = {f"{len(images)} CLIVE images (every 2nd row)": images, f"{args.mosaics} 1080p mosaics": mosaics(args.mosaics)}
    feats = {s: {v: features(run, frames, model.preprocess) for v, run in runs.items()} for s, frames in sets.items()}

    cpu, flags = read_cpuinfo()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    command = "python experiments/bf16_error_sources.py " + " ".join(sys.argv[1:])
    rows = []

    def row(variant, inputs, metric, value, ratio=""):
        rows.append({"date": date.today().isoformat(), "cpu": cpu, "flags": " ".join(f for f in RELEVANT_FLAGS if f in flags),
                     "commit": commit.strip(), "command": command, "variant": variant, "inputs": inputs, "metric": metric,
                     "value": f"{value:.4g}", "ratio": ratio})

    first = next(iter(sets))
    ref, bf = feats[first]["fp32"], feats[first]["bf16"]
    widths = [*net.trunk.channels, net.branch.feature_dim // 2]
    print(f"## bf16 graph vs fp32 per block, {first}, head {head.name}\nscale block  stat  median_rel_err  mean|w.df|")
    start = 0
    for scale in ("full", "half"):
        for block, w in zip(BLOCKS, widths):
            for stat in ("mean", "std"):
                s = slice(start, start + w)
                start += w
                rel = float(np.median(np.abs(bf[:, s] - ref[:, s]) / (np.abs(ref[:, s]) + 1e-6)))
                share = float(np.abs((bf[:, s] - ref[:, s]) @ head.weights[s]).mean())
                print(f"{scale:5} {block:6} {stat:4}  {rel:.2e}  {share:.3f}")
                row("bf16", first, f"{scale} {block} {stat}: median relative feature error", rel)
                row("bf16", first, f"{scale} {block} {stat}: mean |score change| from this block alone", share)
    frame = mosaics(1)[0]
    inputs = [x[None] for x in model.preprocess(frame)]
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(3):
        for v, run in runs.items():
            t = time.process_time()
            for x in inputs:
                run(x)
            best[v] = min(best[v], time.process_time() - t)
    print(f"\n## score change against fp32 ({head.name}); CPU s per 1080p frame, {args.threads} thread(s)")
    for v in runs:
        for s in sets:
            f = feats[s][v]
            base = head.predict(feats[s]["fp32"])
            change = head.predict(f) - base
            print(f"{v:32} {s:32} mean|ds| {np.abs(change).mean():.3f} max {np.abs(change).max():.3f} "
                  f"mean ds {change.mean():+.3f}")
            row(v, s, "mean |score change|", float(np.abs(change).mean()))
            row(v, s, "max |score change|", float(np.abs(change).max()))
        ratio = best["fp32"] / best[v]
        print(f"{v:32} CPU s per 1080p frame {best[v]:.2f} ({ratio:.2f}x fp32)")
        row(v, "one 1080p mosaic, both scales, best of 3", "cpu_s_per_1080p_frame", best[v], f"{ratio:.2f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=FIELDS).to_csv(args.output, index=False)
    print(f"wrote {len(rows)} rows to {args.output}")


if __name__ == "__main__":
    main()
