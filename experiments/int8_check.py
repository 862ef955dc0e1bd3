"""Would ONNX Runtime static int8 be accurate enough for a model (EfficientNet-Lite or ResNet)? A measured answer.
Answered: ONNX Runtime static int8 is out of bounds for EfficientNet-Lite (scores move 1.3 points on average, 0.5 accepted), so no int8 table ships.

Quantises the model's fp32 ONNX export with ONNX Runtime's ``quantize_static`` (QDQ, uint8 activations with
ranges from ``--method``: MinMax, Percentile or Entropy; 8-bit per-channel int8 weights, ``reduce_range`` off
where the CPU has VNNI, as the 7-bit fallback is only for CPUs without it), calibrated on every
``--calib-step``-th CLIVE image, and compares it with fp32 ONNX Runtime on every ``--eval-step``-th image (offset
so the two sets do not overlap): relative L2 feature error, mean and max score change with the model's default
head (NSS features, for a card that has them, are computed once: int8 does not touch them), SRCC change
against MOS.

    python experiments/int8_check.py --clive ../shared/data/clive-train -o runs/precision/lite2-int8.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CROP = 250  # calibration tiles for the histogram methods (CLIVE images are 500x500)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clive", required=True, type=Path)
    ap.add_argument("--weights", type=Path, help="model card (default: the built-in model)")
    ap.add_argument("--calib-step", type=int, default=116, help="calibration: every N-th image (9 of 930)")
    ap.add_argument("--eval-step", type=int, default=30, help="evaluation: every N-th image, offset by N // 2")
    ap.add_argument("--reduce-range", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--method", choices=["minmax", "percentile", "entropy"], default="minmax")
    ap.add_argument("--keep-fp32", default="", help="comma-separated parts of node names left unquantised, "
                    "e.g. encoder.7/ (a ResNet's last stage)")
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args(argv)

    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from PIL import Image
    from scipy.stats import spearmanr

    from contrique_video.api import Scorer, builtin_weights
    from contrique_video.backends.cpu import cpu_flags
    from contrique_video.backends.export import INPUT
    from contrique_video.backends.onnx import OnnxRuntimeBackend
    from contrique_video.backends.onnx_cache import cached_export
    from contrique_video.models.card import is_card, read_card
    from contrique_video.models.nss import nss_features
    from contrique_video.models.transforms import half_scale, to_array
    from contrique_video.training.fit import match_files, read_mos

    weights = args.weights or builtin_weights()
    nss = is_card(weights) and read_card(weights).nss
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[args.method]
    vnni = bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})
    reduce_range = {"auto": not vnni, "on": True, "off": False}[args.reduce_range]
    table = read_mos(args.clive / "mos.csv")
    files = match_files(table, args.clive / "images")
    calib = [np.asarray(Image.open(f).convert("RGB")) for f in files[:: args.calib_step]]
    eval_idx = [i for i in range(args.eval_step // 2, len(files), args.eval_step) if i % args.calib_step]

    def tiles(rgb: np.ndarray) -> list[np.ndarray]:
        """Histogram methods stack every calibration output, so all inputs need one size: the four 250x250
        corners of the full scale (native resolution) and the middle 250x250 of the half scale."""
        c, half = CROP, half_scale(rgb)
        y, x = (half.shape[0] - c) // 2, (half.shape[1] - c) // 2
        corners = [rgb[i : i + c, j : j + c] for i in (0, rgb.shape[0] - c) for j in (0, rgb.shape[1] - c)]
        return [*corners, half[y : y + c, x : x + c]]

    def inputs(rgb: np.ndarray) -> list[np.ndarray]:
        return [rgb, half_scale(rgb)] if args.method == "minmax" else tiles(rgb)

    if args.method != "minmax":
        calib = [f for f in calib if min(f.shape[:2]) >= 2 * CROP]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = (to_array(x)[None] for f in calib for x in inputs(f))

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {INPUT: x}

    fp32 = cached_export(weights, "fp32")
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        prepared, int8 = Path(tmp) / "prep.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        keep = [p for p in args.keep_fp32.split(",") if p]
        names = [n.name for n in onnx.load(str(prepared)).graph.node]
        unmatched = [p for p in keep if not any(p in name for name in names)]
        if unmatched:
            raise SystemExit(f"--keep-fp32: no node name contains {', '.join(unmatched)} (e.g. {names[len(names) // 2]})")
        excluded = [name for name in names if any(p in name for p in keep)]
        quantize_static(str(prepared), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=method, nodes_to_exclude=excluded)
        print(f"quantised in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        backends = [OnnxRuntimeBackend(fp32), OnnxRuntimeBackend(int8)]
        head = Scorer(weights=weights, backend="torch").check_head()
        feats = [[], []]
        for k, i in enumerate(eval_idx):
            rgb = np.asarray(Image.open(files[i]).convert("RGB"))
            extra = nss_features(rgb) if nss else np.zeros(0, np.float32)
            for j, b in enumerate(backends):
                feats[j].append(np.concatenate([b([rgb])[0], extra]))
            if k % 10 == 0:
                print(f"{k + 1}/{len(eval_idx)} images", file=sys.stderr, flush=True)
    ref, new = np.array(feats[0]), np.array(feats[1])
    enc = backends[0].feature_dim  # the error of the encoder's features; NSS features are the same in both
    s_ref, s_new = head.predict(ref), head.predict(new)
    mos = table["mos"].to_numpy()[eval_idx]
    result = {
        "quantisation": f"onnxruntime {__import__('onnxruntime').__version__} quantize_static QDQ, per-channel int8 "
                        f"weights, reduce_range {reduce_range} (VNNI: {vnni}), uint8 activations, {method.name}"
                        + (f"; {len(excluded)} nodes matching {', '.join(keep)} kept fp32" if keep else ""),
        "calibration": f"{len(calib)} clive-train images (every {args.calib_step}. row), "
                       + ("both scales" if args.method == "minmax" else f"as {CROP}x{CROP} tiles of both scales"),
        "evaluation": f"{len(eval_idx)} other clive-train images (every {args.eval_step}. row from {args.eval_step // 2}, "
                      "calibration images left out)",
        "feature_rel_l2": float(np.linalg.norm(new[:, :enc] - ref[:, :enc]) / np.linalg.norm(ref[:, :enc])),
        "mean_abs_score_change": float(np.abs(s_new - s_ref).mean()),
        "max_abs_score_change": float(np.abs(s_new - s_ref).max()),
        "srcc_fp32": float(spearmanr(s_ref, mos)[0]),
        "srcc_change": float(spearmanr(s_new, mos)[0] - spearmanr(s_ref, mos)[0]),
        "command": "python experiments/int8_check.py " + " ".join(argv or sys.argv[1:]),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
