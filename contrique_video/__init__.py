"""No-reference video quality scoring with CONTRIQUE features.

The public names are imported on first use so that ``contrique-video --help`` does not load PyTorch.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Outputs", "Sampling", "Scorer", "ScorerSettings", "VideoScore", "score", "score_many", "__version__"]

_LAZY = {"Scorer": "api", "VideoScore": "api", "score": "api", "score_many": "runs.batch", "Outputs": "runs.batch",
         "ScorerSettings": "runs.settings", "Sampling": "decode.sampler"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
