"""Static int8 quantisation of the fp32 export (ONNX Runtime, QDQ) and its calibration tables.

A table of activation ranges makes quantisation the same on every machine; a model card may ship one
(``int8_calibration``), else ``export-onnx --precision int8 --calibrate`` writes one into the cache.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from contrique_video.backends.export import INPUT, read_metadata, set_metadata
from contrique_video.cache import cache_dir
from contrique_video.errors import ModelError, UnsupportedError
from contrique_video.files import atomic_path
from contrique_video.models import ResolvedModel, family_of, resolve_model
from contrique_video.models.transforms import TwoScale


def check_int8(fp32_path: str | os.PathLike) -> None:
    """Refuse int8 for a family that records why (measured on CLIVE images with a table from 8 others)."""
    encoder = read_metadata(fp32_path).get("encoder", "")
    refusal = family_of(encoder.split("/")[0]).no_int8 if encoder else None
    if refusal:
        raise UnsupportedError(f"int8 is not offered for {encoder}: {refusal}")


def calibration_table(weights: str | os.PathLike | ResolvedModel, digest: str) -> Path:
    """The int8 activation ranges for a model: its card's table, else the one ``export-onnx --precision int8
    --calibrate`` made in the cache for weights with this digest."""
    card = resolve_model(weights).card
    if card is not None and card.int8_table is not None:
        return card.int8_table
    return cache_dir() / "onnx" / f"{digest}-int8-calibration.json"


def quantize_int8(fp32_path: str | os.PathLike, out_path: str | os.PathLike, calibration: str | os.PathLike,
                  frames: list[np.ndarray] | None = None) -> Path:
    """Static int8 (QDQ, per-channel weights, 7-bit weights for CPUs without VNNI) from a calibration table.

    ``calibration`` is ONNX Runtime's JSON table of activation ranges. When it does not exist yet it is
    computed from ``frames`` (RGB arrays, both scales of each are used) and saved, so the same table
    quantises the same way on every machine.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    calibration, out_path = Path(calibration), Path(out_path)
    check_int8(fp32_path)
    if not calibration.is_file() and not frames:
        raise ModelError(f"int8 needs a calibration table ({calibration}) or frames to compute one")
    preprocess = TwoScale()

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = (x[None] for f in frames or [] for x in preprocess(f))

        def get_next(self):
            x = next(self._batches, None)
            return None if x is None else {INPUT: x}

    import onnx

    with atomic_path(out_path) as tmp:
        prepared = tmp.with_name(tmp.name + ".prep")  # named after the unique temporary: another may quantise too
        try:
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
            if calibration.is_file():
                check_table(prepared, calibration)
            quantize_static(
                str(prepared), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=str(calibration),
            )
        except (KeyError, ValueError) as exc:
            raise ModelError(f"int8 calibration table {calibration} does not fit this model: {exc}") from None
        finally:
            prepared.unlink(missing_ok=True)
        proto = onnx.load(str(tmp))
        set_metadata(proto, {"precision": "int8"})
        onnx.save(proto, str(tmp))
    return out_path


def check_table(model_path: Path, table: Path) -> None:
    """A calibration table must name exactly this graph's activations: ONNX Runtime would silently quantise
    with whatever ranges happen to share a name (a ResNet-18 and a ResNet-50 share many)."""
    import onnx

    try:
        ranges = set(json.loads(table.read_text())["data"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"int8 calibration table {table} is unreadable ({type(exc).__name__})") from None
    graph = onnx.load(str(model_path)).graph
    weights = {t.name for t in graph.initializer}
    convs = {n for node in graph.node if node.op_type == "Conv" for n in (*node.input, *node.output)} - weights
    values = {i.name for i in graph.input} | {o for node in graph.node for o in node.output}
    if ranges - values or convs - ranges:
        raise ModelError(f"int8 calibration table {table} does not fit this model: "
                         f"{len(ranges - values)} unknown and {len(convs - ranges)} missing activations")


__all__ = ["calibration_table", "check_int8", "check_table", "quantize_int8"]
