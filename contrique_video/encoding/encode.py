"""Encoding for CRF search and ladders: the encodes under test, and lossless intermediates to score.

The encodes being measured use the encoder asked for, through PyAV's FFmpeg or through an external ffmpeg
binary the user points to (``ffmpeg=``), which may have encoders PyAV lacks (libaom-av1 here). The
lossless intermediates (the sample reel a CRF search encodes, the display-size upscales a ladder scores)
always use PyAV's libx264 at QP 0, so they never depend on the external binary.

Frames are decoded in one sequential pass (no seeking, so the same input always gives the same frames),
converted to 8-bit 4:2:0, and renumbered at the source's average frame rate. Colour tags are copied from
the source, so a rendition decodes with the source's matrix whatever its height.

This module holds the encoders, the settings and their checks, and the encode entry points; the PyAV pass
is in :mod:`.transcode`, the external binary in :mod:`.ffmpeg_cli`, and what a file holds in :mod:`.probe`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from contrique_video.encoding.ffmpeg_cli import (
    encoder_help,
    ffmpeg_encoders,
    generic_codec_options,
    option_names,
    resolve_ffmpeg,
    run_ffmpeg,
)
from contrique_video.encoding.probe import Encoded, describe
from contrique_video.encoding.transcode import (
    DOWNSCALE,
    PIX_FMT,
    UPSCALE,
    filter_graph,
    transcode,
)
from contrique_video.errors import InputError, UnsupportedError


@dataclass(frozen=True)
class EncoderSpec:
    """What differs between encoders: the CRF scale, and how a preset and fixed options are given."""

    name: str
    crf_min: int
    crf_max: int
    preset: str | None
    preset_option: str = "preset"
    options: dict = field(default_factory=dict)


ENCODERS = {
    "libx264": EncoderSpec("libx264", 0, 51, "medium"),
    "libx265": EncoderSpec("libx265", 0, 51, "medium", options={"x265-params": "log-level=error"}),
    "libsvtav1": EncoderSpec("libsvtav1", 1, 63, "8"),
    "libvpx-vp9": EncoderSpec("libvpx-vp9", 0, 63, "4", "cpu-used", {"b": "0", "deadline": "good", "row-mt": "1"}),
    "libaom-av1": EncoderSpec("libaom-av1", 0, 63, "6", "cpu-used", {"b": "0", "row-mt": "1"}),
}


@dataclass(frozen=True)
class EncodeSettings:
    """What an encode is asked for beyond encoder and CRF, as ab-av1's encoder arguments: the preset, the
    pixel format, a filter chain run before encoding, the key frame interval, and private options."""

    preset: str | None = None
    pix_fmt: str = PIX_FMT
    vfilter: str | None = None
    keyint: int | None = None
    extra: tuple[tuple[str, str], ...] = ()

    def record(self) -> dict:
        return {"preset": self.preset, "pix_format": self.pix_fmt, "vfilter": self.vfilter, "keyint": self.keyint,
                "enc": dict(self.extra)}


def check_encoder(encoder: str, ffmpeg: str | None = None) -> EncoderSpec:
    """The encoder's spec, or a one-line error saying what is available instead."""
    if encoder not in ENCODERS:
        raise UnsupportedError(f"unknown encoder {encoder!r}; supported: {', '.join(ENCODERS)}")
    if ffmpeg:
        have = ffmpeg_encoders(resolve_ffmpeg(ffmpeg))
        where = f"{ffmpeg}"
    else:
        have = set(av.codecs_available)
        where = "PyAV's FFmpeg"
    if encoder not in have:
        usable = ", ".join(e for e in ENCODERS if e in have) or "none"
        hint = "" if ffmpeg else "; pass --ffmpeg PATH to an ffmpeg that has it"
        raise UnsupportedError(f"encoder {encoder} is not available in {where} (usable here: {usable}){hint}")
    return ENCODERS[encoder]


def check_crf(spec: EncoderSpec, crf: float) -> None:
    if not spec.crf_min <= crf <= spec.crf_max:
        raise InputError(f"CRF {crf:g} is outside {spec.name}'s range {spec.crf_min}..{spec.crf_max}")


def encoder_options(spec: EncoderSpec, crf: float, preset: str | None, keyint: int | None = None,
                    extra: Sequence[tuple[str, str]] = ()) -> dict[str, str]:
    """AVOptions of one encode; ``extra`` (``--enc``) comes last, so it overrides our defaults."""
    opts = {"crf": f"{crf:g}", **spec.options}
    chosen = preset or spec.preset
    if chosen:
        opts[spec.preset_option] = str(chosen)
    if keyint:
        opts["g"] = str(keyint)
    opts.update(dict(extra))
    return opts


def parse_enc(values: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``--enc KEY=VALUE`` arguments as pairs (a leading ``-`` on the key is dropped, as ffmpeg writes it)."""
    pairs = []
    for value in values:
        key, sep, val = value.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise InputError(f"--enc {value!r}: give KEY=VALUE, e.g. --enc tune=grain or --enc x265-params=aq-mode=3")
        if key in ("crf", "qp"):
            raise InputError(f"--enc {key}: the CRF is what the search chooses; use --min-crf/--max-crf")
        pairs.append((key, val))
    return tuple(pairs)


def check_settings(encoder: str, settings: EncodeSettings, ffmpeg: str | None = None) -> None:
    """Refuse, in one line each, a pixel format the encoder cannot take, an option it does not have, or a
    filter chain that does not parse, before anything is encoded."""
    try:
        av.VideoFormat(settings.pix_fmt)
    except (ValueError, TypeError):
        raise InputError(f"--pix-format {settings.pix_fmt}: no such pixel format (e.g. yuv420p, yuv420p10le)") from None
    # Every encoder here takes yuv420p (the default), so the external ffmpeg is only asked about others.
    help_text = encoder_help(encoder, ffmpeg) if settings.extra or (ffmpeg and settings.pix_fmt != PIX_FMT) else None
    if ffmpeg and help_text is not None:
        supported = [line.split(":", 1)[1].split() for line in (help_text or "").splitlines()
                     if "Supported pixel formats:" in line]
        formats = supported[0] if supported else None
    elif ffmpeg:
        formats = None
    else:
        formats = [f.name for f in (av.codec.Codec(encoder, "w").video_formats or [])] or None
    if formats is not None and settings.pix_fmt not in formats:
        raise InputError(f"--pix-format {settings.pix_fmt}: {encoder} cannot encode it; it takes {', '.join(formats)}")
    if settings.extra and help_text is not None:
        known = option_names(help_text) | generic_codec_options(ffmpeg) | {"b:v"}
        for key, _ in settings.extra:
            if key not in known:
                raise InputError(f"--enc {key}: {encoder} has no such option (see `ffmpeg -h encoder={encoder}`)")
    if settings.keyint is not None and settings.keyint < 1:
        raise InputError(f"--keyint {settings.keyint}: give a positive number of frames")
    if settings.vfilter:
        check_vfilter(settings.vfilter, ffmpeg)


@functools.lru_cache(maxsize=16)
def check_vfilter(chain: str, ffmpeg: str | None = None) -> None:
    """Run the chain on one small grey frame, in the ffmpeg that will encode, so a typo fails before the search."""
    if ffmpeg:
        run_ffmpeg(resolve_ffmpeg(ffmpeg), ["-f", "lavfi", "-i", "color=gray:s=64x64:d=0.04", "-vf", chain,
                                             "-f", "null", "-"], f"checking --vfilter {chain!r}")
        return
    frame = av.VideoFrame(64, 64, PIX_FMT)
    frame.pts, frame.time_base = 0, Fraction(1, 25)
    graph, _, _ = filter_graph(chain, frame)
    try:
        graph.push(frame)
        graph.push(None)
        while True:
            graph.pull()
    except (av.error.BlockingIOError, av.error.EOFError):
        pass
    except av.error.FFmpegError as exc:
        raise InputError(f"--vfilter {chain!r}: {exc}") from None


def encode(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    encoder: str,
    crf: float,
    *,
    height: int | None = None,
    preset: str | None = None,
    ffmpeg: str | None = None,
    settings: EncodeSettings | None = None,
    audio: bool = False,
) -> Encoded:
    """Encode the video stream of ``src`` at ``crf`` (and ``height``, downscaled with Lanczos) into ``dst``.

    ``settings`` (preset, pixel format, filter chain, key frame interval, private options) applies to this
    encode; a ``preset`` given directly wins over its preset. ``audio`` copies the audio streams as they
    are (a final encode keeps its sound; probes and renditions do not need it).
    """
    settings = settings or EncodeSettings()
    spec = ENCODERS[encoder]
    check_crf(spec, crf)
    opts = encoder_options(spec, crf, preset or settings.preset, settings.keyint, settings.extra)
    if ffmpeg:
        args = ["-i", str(src), "-map", "0:v:0"] + (["-map", "0:a?", "-c:a", "copy"] if audio else ["-an"]) + ["-sn", "-dn"]
        filters = ([settings.vfilter] if settings.vfilter else []) + ([f"scale=-2:{height}:flags={DOWNSCALE}"] if height else [])
        if filters:
            args += ["-vf", ",".join(filters)]
        args += ["-c:v", encoder, "-pix_fmt", settings.pix_fmt]
        for key, value in opts.items():
            args += [f"-{'b:v' if key == 'b' else key}", value]
        run_ffmpeg(resolve_ffmpeg(ffmpeg), [*args, str(dst)], f"encoding {Path(src).name} with {encoder} at CRF {crf:g}")
        return describe(dst)
    return transcode(src, dst, encoder, opts, height=height, interpolation=DOWNSCALE, pix_fmt=settings.pix_fmt,
                     vfilter=settings.vfilter, audio=audio)


def lossless_reel(src: str | os.PathLike, dst: str | os.PathLike, spans: Sequence[tuple[float, float]],
                  pix_fmt: str = PIX_FMT) -> Encoded:
    """The frames of ``src`` inside the (start, duration) spans, back to back, losslessly (x264 QP 0); a
    10-bit ``pix_fmt`` keeps 10 bits, so a 10-bit encode of the reel sees what it would see of the source."""
    if pix_fmt not in {f.name for f in av.codec.Codec("libx264", "w").video_formats or []}:
        pix_fmt = PIX_FMT
    return transcode(src, dst, "libx264", {"qp": "0", "preset": "ultrafast"}, spans=spans, pix_fmt=pix_fmt)


def upscale(src: str | os.PathLike, dst: str | os.PathLike, size: tuple[int, int]) -> Encoded:
    """``src`` resized to ``size`` (the display size) with bicubic filtering, losslessly (x264 QP 0)."""
    return transcode(src, dst, "libx264", {"qp": "0", "preset": "ultrafast"}, size=size, interpolation=UPSCALE)

