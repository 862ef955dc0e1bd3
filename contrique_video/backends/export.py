"""ONNX export of the encoder, its metadata, and where exports and engines are cached.

The exported graph is one scale of the model module (``Contrique.forward``, or an EfficientNet-Lite layout):
``image`` (N x 3 x H x W float32 in [0, 1], N, H and W dynamic) to ``feature`` (N x D, pooled). Batch norm is
folded into the convolutions. ONNX Runtime runs it, and TensorRT builds its engines from it (see ``trt/``).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from contrique_video import __version__
from contrique_video.errors import ModelError
from contrique_video.files import atomic_write, sha256_file

if TYPE_CHECKING:
    import torch

INPUT, OUTPUT = "image", "feature"
OPSET = 17


def file_digest(path: str | os.PathLike) -> str:
    """First 16 hex digits of the file's SHA-256: names cached exports and engines after the weights."""
    return sha256_file(path)[:16]


def onnx_bytes(model: torch.nn.Module, fold: bool = True) -> bytes:
    """The encoder as an ONNX graph (fp32, opset 17, dynamic N, H and W), without metadata; ``fold``: fold batch
    norm and other constants into the graph (OpenVINO folds them itself when it compiles, and the exporter's
    folding cost the built-in model 1-1.5 s of CPU on this two-core machine).

    Traced on a 64x64 frame (the smallest size scored): the graph is the same for every size (the Lite trunk's
    pads are fixed), and tracing a 224x224 frame cost 2-3 s more on two cores, most of a first run's preparation.
    """
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter is deprecated in favour of the dynamo one, which needs onnxscript and
        # produced no better graph for this plain convolutional network.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval().float(), (torch.zeros(1, 3, 64, 64),), buffer, dynamo=False, opset_version=OPSET,
            input_names=[INPUT], output_names=[OUTPUT], do_constant_folding=fold,
            dynamic_axes={INPUT: {0: "batch", 2: "height", 3: "width"}, OUTPUT: {0: "batch"}},
        )
    return buffer.getvalue()


def export_onnx(model: torch.nn.Module, path: str | os.PathLike, source: str = "") -> Path:
    """Write the encoder as ONNX (fp32, opset 17), atomically; ``source`` (the weights' digest) goes in metadata,
    with ``encoder`` (``<encoder>/<layout>``) so int8 can refuse a family."""
    import onnx

    proto = onnx.load_from_string(onnx_bytes(model))
    set_metadata(proto, {"contrique_video": __version__, "source": source, "precision": "fp32",
                         "encoder": encoder_id(model)})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, proto.SerializeToString())


def encoder_id(model) -> str:
    """``<encoder>/<layout>``: recorded with an export, so int8 can refuse a family."""
    return f"{model.encoder_name}/{model.layout}"


def set_metadata(proto, values: dict[str, str]) -> None:
    kept = {p.key: p.value for p in proto.metadata_props}
    kept.update(values)
    del proto.metadata_props[:]
    for k, v in kept.items():
        proto.metadata_props.add(key=k, value=v)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The file's metadata; a file ONNX cannot parse raises ModelError (never half-used)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(proto)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, ...: all mean "not a usable model"
        raise ModelError(f"{path}: not a valid ONNX model ({type(exc).__name__})") from None
    return {p.key: p.value for p in proto.metadata_props}


def check_io(names_in: list[str], names_out: list[str], path: str | os.PathLike) -> None:
    """Refuse a graph that is not one of this package's exports (another model's inputs and outputs)."""
    if names_in != [INPUT] or names_out != [OUTPUT]:
        raise ModelError(f"{path}: not a contrique-video export (expects input {INPUT!r}, output {OUTPUT!r})")


__all__ = ["INPUT", "OPSET", "OUTPUT", "check_io", "encoder_id", "export_onnx", "file_digest", "onnx_bytes",
           "read_metadata", "set_metadata"]
