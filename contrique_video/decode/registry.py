"""The decoder registry: a name (``--decoder``) to the function that opens a video with it and what it can do.

Each decoder module registers its opener with :func:`register_decoder`; ``decode/__init__.py`` imports the
modules, and ``open_source``, the CLI's ``--decoder`` choices and ``info`` read :data:`DECODERS`. Decoder
modules import their library (PyAV, decord) inside functions, so registering costs nothing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from contrique_video.decode.base import FrameSource

#: ``opener(path, threads, device, seek)``: ``path`` is a checked file or ``"-"`` (stdin, for a decoder that
#: reads pipes); ``seek`` False asks for one pass from the start instead of seeking to the sampled frames.
Opener = Callable[[Path | str, int, str, bool], "FrameSource"]


@dataclass(frozen=True)
class DecoderSpec:
    name: str
    opener: Opener
    requires: str  # the package (import name) that must be installed
    description: str  # one line for --help and info
    stdin: bool = False  # reads a stream on stdin
    gpu: bool = False  # decodes on a CUDA device itself (else --device cuda decodes on the CPU, with a warning)

    def installed(self) -> bool:
        return importlib.util.find_spec(self.requires) is not None


DECODERS: dict[str, DecoderSpec] = {}


def register_decoder(name: str, *, requires: str, description: str, stdin: bool = False,
                     gpu: bool = False) -> Callable[[Opener], Opener]:
    """Decorator: register ``opener`` as decoder ``name`` (see :class:`DecoderSpec` for the rest)."""

    def add(opener: Opener) -> Opener:
        if name in DECODERS:
            raise ValueError(f"decoder {name!r} is registered already")
        DECODERS[name] = DecoderSpec(name, opener, requires, description, stdin, gpu)
        return opener

    return add


__all__ = ["DECODERS", "DecoderSpec", "Opener", "register_decoder"]
