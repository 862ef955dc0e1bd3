"""Per-frame features to a file (``contrique-video features``): .npy, .npz or .parquet."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from contrique_video.errors import InputError

FEATURE_SUFFIXES = (".npy", ".npz", ".parquet")


def write_features(result, path: str | os.PathLike) -> Path:
    """Write a :class:`~contrique_video.api.FrameFeatures`: .npy (float32 [frames, D]), .npz (with ``frame`` and
    ``pts_time``) or .parquet (a row per frame). Atomic: written beside the target, then renamed, so a failure
    never leaves a half file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    suffix = path.suffix.lower()
    features = result.features.astype(np.float32)
    with open(tmp, "wb") as f:
        if suffix == ".npy":
            np.save(f, features)
        elif suffix == ".npz":
            np.savez(f, features=features, frame=result.frame, pts_time=result.pts_time)
        else:
            table = pd.DataFrame({"frame": result.frame, "pts_time": result.pts_time})
            table["features"] = list(features)
            try:
                table.to_parquet(f, index=False)
            except ImportError:
                tmp.unlink(missing_ok=True)
                raise InputError("parquet output needs pyarrow: pip install 'contrique-video[parquet]'") from None
    tmp.replace(path)
    return path
