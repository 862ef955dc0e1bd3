"""FP16 copy of the fp32 ONNX export, for strongly typed TensorRT builds (TensorRT >= 11 has no FP16 flag).

The convolutional trunk runs in fp16; the input stays fp32 (a Cast is inserted), and the tail that pools and
L2-normalises the features stays fp32: ``Contrique.forward`` already casts the pooled features to float before
normalising, so everything after that ReduceMean's Cast is kept out of the conversion. The conversion is
ONNX Runtime's own converter (``onnxruntime.transformers``), which ships with onnxruntime: no extra dependency.
onnxconverter-common 1.16 was tried first and rejected: on this graph it either fails ONNX Runtime's type check
(it rewrites the explicit fp32 Cast's output to fp16) or, with the tail blocked, declares an fp16 output.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from contrique_video.backends.export import check_io, file_digest, read_metadata, set_metadata
from contrique_video.cache import cache_dir
from contrique_video.errors import ModelError
from contrique_video.files import atomic_write

log = logging.getLogger("contrique_video")


def fp32_tail(graph) -> list[str]:
    """Names of the nodes after global average pooling (the ReduceMean): these stay fp32.

    fp16 has 10 significant bits and a 65504 ceiling; the sum of squares over 2048 features in ReduceL2 and the
    1e-12 clamp are where it would hurt, and they cost nothing next to the convolutions.
    """
    ops = [n.op_type for n in graph.node]
    if "ReduceMean" not in ops:
        raise ModelError("not a contrique-video export: no global average pooling (ReduceMean) in the graph")
    start = len(ops) - 1 - ops[::-1].index("ReduceMean")
    return [n.name for n in graph.node[start + 1 :]]


def convert_to_fp16(fp32_path: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Write an fp16 copy of an fp32 export with fp32 ``image`` input and ``feature`` output, atomically."""
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    meta = read_metadata(fp32_path)
    if meta.get("precision", "fp32") != "fp32":
        raise ModelError(f"{fp32_path} is a {meta['precision']} export; fp16 is made from the fp32 one")
    proto = onnx.load(str(fp32_path))
    check_io([i.name for i in proto.graph.input], [o.name for o in proto.graph.output], fp32_path)
    model = OnnxModel(proto)
    model.convert_float_to_float16(keep_io_types=True, node_block_list=fp32_tail(proto.graph))
    model.topological_sort()  # the converter appends its input Cast at the end of the node list
    converted = model.model
    set_metadata(converted, {"precision": "fp16", "fp32_onnx": file_digest(fp32_path)})
    onnx.checker.check_model(converted)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(out_path, converted.SerializeToString())


def cached_fp16(fp32_path: str | os.PathLike, label: str | None = None) -> Path:
    """The fp16 copy of an fp32 export, made once into the cache; one that names another source is remade.
    ``label`` names the model in the message (default: the export's file name)."""
    digest = file_digest(fp32_path)
    path = cache_dir() / "engines" / "onnx" / f"{digest}-fp16.onnx"
    if path.is_file():
        try:
            meta = read_metadata(path)
            if meta.get("precision") == "fp16" and meta.get("fp32_onnx") == digest:
                return path
            log.warning("%s was made from another model: remaking it", path)
        except ModelError as exc:
            log.warning("%s: remaking it", exc)
    log.info("converting %s to fp16 (once; kept in %s)", label or Path(fp32_path).name, path.parent)
    return convert_to_fp16(fp32_path, path)
