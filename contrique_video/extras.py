"""Optional parts of the install: which extra of ``pip install 'contrique-video[EXTRA]'`` brings each optional
package, and the one error a missing one gives.

The core install scores (PyAV, PyTorch, ONNX Runtime and OpenVINO for ``--backend auto``) and encodes; plots,
training, Dask, decord, TensorRT, Parquet and an ffmpeg with libvmaf are extras. :func:`require` imports an optional
package where it is needed; the CLI turns any other missing optional import into the same line.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from contrique_video.errors import UnsupportedError, UsageError

#: Import name -> (the extra that installs it, the distribution's name).
EXTRAS: dict[str, tuple[str, str]] = {
    "skimage": ("train", "scikit-image"),
    "distributed": ("dask", "dask[distributed]"),
    "dask": ("dask", "dask[distributed]"),
    "decord": ("decord", "decord2"),
    "tensorrt": ("tensorrt", "tensorrt"),
    "pyarrow": ("parquet", "pyarrow"),
    "imageio_ffmpeg": ("vmaf", "imageio-ffmpeg"),
    "matplotlib": ("plots", "matplotlib"),
}


class MissingExtraError(UnsupportedError):
    """An optional package that is not installed; the message names the extra that brings it."""


def missing(module: str, needed_for: str) -> MissingExtraError:
    """The one-line error for an optional ``module`` (import name) that is not installed."""
    top = module.split(".")[0]
    extra, package = EXTRAS[top]
    return MissingExtraError(f"{needed_for} needs {package}, which is not installed: "
                             f"pip install 'contrique-video[{extra}]'")


def require(module: str, needed_for: str, usage: bool = False) -> ModuleType:
    """Import an optional ``module``, or raise :class:`MissingExtraError` naming its extra; with ``usage``, a
    :class:`~contrique_video.errors.UsageError` (exit 2) instead, for an option checked before any work."""
    try:
        return importlib.import_module(module)
    except ImportError:
        error = missing(module, needed_for)
        raise (UsageError(str(error)) if usage else error) from None


__all__ = ["EXTRAS", "MissingExtraError", "missing", "require"]
