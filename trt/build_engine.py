#!/usr/bin/env python
"""Build TensorRT engines ahead of time, so the first `--backend tensorrt` run does not wait for a build.

Exports the checkpoint to ONNX into the cache (the same file `contrique-video score --backend tensorrt` uses, so
the engines built here are the ones it finds), then builds and caches one engine per resolution given
(with its half scale). See trt/README.md.

    python trt/build_engine.py --resolution 1920x1080 --resolution 1280x720
    python trt/build_engine.py --weights CONTRIQUE_checkpoint25.tar --precision fp32 --resolution 3840x2160
    python trt/build_engine.py --export-only          # ONNX (and its fp16 copy) only; no GPU needed
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

try:
    import contrique_video  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def resolution(text: str) -> tuple[int, int]:
    """"1920x1080" (width x height, as video tools write it) -> (height, width), as profiles take it."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1920x1080, got {text!r}") from None
    return h, w


def main(argv: list[str] | None = None) -> int:
    from contrique_video.backends.engine_cache import DEFAULT_MAX_BATCH
    from contrique_video.backends.tensorrt import TRT_PRECISIONS
    from contrique_video.errors import ContriqueError

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--weights", type=Path, help="checkpoint (.pt/.tar); default: the built-in model")
    source.add_argument("--onnx", type=Path, help="an existing fp32 export (contrique-video export-onnx)")
    parser.add_argument("--resolution", type=resolution, action="append", metavar="WxH",
                        help="frame size to build for (repeatable; its half scale is added); default 1920x1080")
    parser.add_argument("--precision", choices=TRT_PRECISIONS, default="fp16")
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH, help="largest batch (default %(default)s)")
    parser.add_argument("--device", default="cuda", help="cuda or cuda:N (default %(default)s)")
    parser.add_argument("--workspace-gib", type=float, help="cap TensorRT's build workspace (GiB)")
    parser.add_argument("--export-only", action="store_true", help="write the ONNX files only, build nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    try:
        from contrique_video.backends import engine_cache, fp16
        from contrique_video.backends import tensorrt as trtb
        from contrique_video.backends.onnx_cache import cached_export

        if not args.export_only:  # fail before a long export when this machine cannot build
            trtb.require_cuda(args.device)
            trtb.import_tensorrt()
        if args.onnx:
            onnx_path = args.onnx
        else:
            from contrique_video.api import builtin_weights

            weights = args.weights or builtin_weights()
            if weights is None:
                raise ContriqueError("no --weights given and the built-in model is not installed")
            onnx_path = cached_export(weights, "fp32")
        print(f"onnx fp32: {onnx_path}")
        if args.export_only:
            print(f"onnx fp16: {fp16.cached_fp16(onnx_path)}")
            return 0
        resolutions = args.resolution or [(1080, 1920)]
        backend = trtb.TensorRTBackend(onnx_path, device=args.device, precision=args.precision,
                                       resolutions=resolutions, max_batch=args.max_batch,
                                       workspace_gib=args.workspace_gib)
        for h, w in dict.fromkeys(resolutions):
            components = backend.components(engine_cache.profiles_for([(h, w)], args.max_batch))
            print(f"{w}x{h}: {engine_cache.engine_path(components)}")
            print(f"  key {engine_cache.engine_key(components)} = {components}")
    except ContriqueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
