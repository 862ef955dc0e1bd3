"""Per-input logs laid out like libvmaf's ``--log``/``log_path`` files (JSON, CSV, XML).

Encoding engineers already have parsers and dashboards for libvmaf logs, so ``score --log`` writes the
same structure: per-frame entries (``frameNum`` plus metric values) and pooled metrics (``min``, ``max``,
``mean``, ``harmonic_mean``), with our own additions (``pts_time``, ``p5``, ``p1``). The metric is named
``contrique``; other per-frame columns the scorer gives (sub-scores, ``vmaf`` with ``--reference``) are
logged beside it. Files are written beside the target and renamed into place, so a failure never leaves
a half-written log under the final name.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from contrique_video import __version__
from contrique_video.files import atomic_write
from contrique_video.pooling import POOLS, pool

LOG_FORMATS = ("json", "csv", "xml")
METRIC = "contrique"  # our per-frame score's name in logs, as libvmaf names its metric "vmaf"
_NOT_METRICS = {"frame", "pts_time", "file"}


def metric_columns(frames: pd.DataFrame) -> dict[str, str]:
    """Frame-table column -> metric name in logs: ``score`` is ``contrique``, ``vmaf`` stays ``vmaf``,
    any other numeric column (a model's sub-score) is ``contrique_<column>``."""
    names = {}
    for col in frames.columns:
        if col in _NOT_METRICS or not pd.api.types.is_numeric_dtype(frames[col]):
            continue
        names[col] = METRIC if col == "score" else col if col.startswith(("vmaf", METRIC)) else f"{METRIC}_{col}"
    return names


def pooled_metrics(frames: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    """Every metric's pooled statistics (:data:`POOLS`), keyed by its log name."""
    return {name: {how: pool(frames[col], how) for how in POOLS} for col, name in metric_columns(frames).items()}


def log_document(result, fps: float | None = None) -> dict:
    """The JSON log of one :class:`~contrique_video.api.VideoScore`: libvmaf's keys (``version``, ``fps``,
    ``frames`` with ``frameNum`` and ``metrics``, ``pooled_metrics``, ``aggregate_metrics``) plus ours
    (``file``, ``model``, ``head``, ``scale``, ``sampling``, ``pooling``, ``pts_time`` per frame).

    ``fps`` is, as in libvmaf, frames processed per second of wall time. ``aggregate_metrics.contrique``
    is the video score (the head applied to the pooled feature), the number ``score`` prints.
    """
    frames = result.frames
    names = metric_columns(frames)
    entries = []
    for row in frames.itertuples(index=False):
        values = row._asdict()
        entries.append({"frameNum": int(values["frame"]), "pts_time": _num(values["pts_time"]),
                        "metrics": {name: _num(values[col]) for col, name in names.items()}})
    aggregate = {METRIC: _num(result.score)}
    for key, value in (getattr(result, "reference", None) or {}).items():
        if isinstance(value, (int, float)) and key.startswith("vmaf"):
            aggregate[key] = _num(value)
    return {
        "version": f"contrique-video {__version__}",
        "fps": None if not fps else round(float(fps), 2),
        "file": result.file,
        "model": result.model,
        "head": result.head,
        "scale": result.scale,
        "higher_is_better": result.higher_is_better,
        "sampling": result.sampling,
        "pooling": result.pooling,
        "frames": entries,
        "pooled_metrics": pooled_metrics(frames),
        "aggregate_metrics": aggregate,
    }


def render_json(doc: dict) -> str:
    return json.dumps(doc, indent=2) + "\n"


def render_csv(doc: dict) -> str:
    """libvmaf's CSV: ``Frame`` then one column per metric (``contrique``, ...), then our ``pts_time``.
    No trailing comma (libvmaf writes one, which some readers take for an unnamed empty column)."""
    names = list(doc["frames"][0]["metrics"]) if doc["frames"] else [METRIC]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["Frame", *names, "pts_time"])
    for entry in doc["frames"]:
        writer.writerow([entry["frameNum"], *(_text(entry["metrics"][n]) for n in names), _text(entry["pts_time"])])
    return out.getvalue()


def render_xml(doc: dict) -> str:
    """libvmaf's XML: ``<frames>`` of ``<frame frameNum=.. contrique=.. />``, ``<pooled_metrics>`` of
    ``<metric name=.. min=.. .../>`` and ``<aggregate_metrics .../>``; the root is ``<contrique_video>``
    (libvmaf's is ``<VMAF>``) with the same ``version`` attribute."""
    root = ET.Element("contrique_video", version=doc["version"])
    ET.SubElement(root, "params", file=doc["file"], model=doc["model"], head=doc["head"], scale=doc["scale"],
                  sampling=doc["sampling"])
    ET.SubElement(root, "fyi", fps="" if doc["fps"] is None else f"{doc['fps']:.2f}")
    frames = ET.SubElement(root, "frames")
    for entry in doc["frames"]:
        ET.SubElement(frames, "frame", frameNum=str(entry["frameNum"]), pts_time=_text(entry["pts_time"]),
                      **{k: _text(v) for k, v in entry["metrics"].items()})
    pooled = ET.SubElement(root, "pooled_metrics")
    for name, stats in doc["pooled_metrics"].items():
        ET.SubElement(pooled, "metric", name=name, **{k: _text(v) for k, v in stats.items() if v is not None})
    ET.SubElement(root, "aggregate_metrics", **{k: _text(v) for k, v in doc["aggregate_metrics"].items()})
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


RENDERERS: dict[str, Callable[[dict], str]] = {"json": render_json, "csv": render_csv, "xml": render_xml}


def log_format(path: str | os.PathLike, fmt: str | None) -> str:
    """The format asked for, else the one the file name's extension names (json by default, as libvmaf)."""
    if fmt:
        return fmt
    suffix = Path(path).suffix.lower().lstrip(".")
    return suffix if suffix in LOG_FORMATS else "json"


def log_path(template: str, file: str, index: int) -> Path:
    """``--log`` for one input: ``{stem}``, ``{name}`` and ``{index}`` in the template are filled in."""
    p = Path(file)
    return Path(template.format(stem=p.stem, name=p.name, index=index))


def write_log(result, path: str | os.PathLike, fmt: str = "json", fps: float | None = None) -> Path:
    """Write one input's log atomically (a temporary file in the same folder, then a rename)."""
    return atomic_write(path, RENDERERS[fmt](log_document(result, fps)))


def _num(value) -> float | None:
    """JSON has no NaN: a missing value is null, as in libvmaf's logs."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _text(value) -> str:
    return "" if value is None else f"{value:.6f}" if isinstance(value, float) else str(value)


def check_log_template(template: str, inputs: int) -> None:
    """A ``--log`` template must name each of several inputs apart, and fill in only what :func:`log_path` knows."""
    if inputs > 1 and not any(k in template for k in ("{stem}", "{name}", "{index}")):
        raise ValueError("--log with several inputs needs {stem}, {name} or {index} in the file name, "
                         "e.g. --log 'logs/{stem}.json'")
    try:
        template.format(stem="", name="", index=0)
    except (KeyError, IndexError, ValueError):
        raise ValueError("--log: only {stem}, {name} and {index} may be filled in") from None
