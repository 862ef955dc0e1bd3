"""Encoding for CRF search and ladders: the encodes under test, and lossless intermediates to score.

The encodes being measured use the encoder asked for, through PyAV's FFmpeg or through an external ffmpeg
binary the user points to (``ffmpeg=``), which may have encoders PyAV lacks (libaom-av1 here). The
lossless intermediates (the sample reel a CRF search encodes, the display-size upscales a ladder scores)
always use PyAV's libx264 at QP 0, so they never depend on the external binary.

Frames are decoded in one sequential pass (no seeking, so the same input always gives the same frames),
converted to 8-bit 4:2:0, and renumbered at the source's average frame rate. Colour tags are copied from
the source, so a rendition decodes with the source's matrix whatever its height.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from .errors import EncodeError, InputError, UnsupportedError

PIX_FMT = "yuv420p"
DOWNSCALE = "lanczos"  # renditions below the source height (ffmpeg's scale flags name)
UPSCALE = "bicubic"  # back to the display size, as VMAF practice does (ffmpeg's scale filter default)


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
class Encoded:
    """An encoded (or lossless intermediate) file: its size, and what bitrate that makes."""

    path: Path
    bytes: int
    frames: int
    seconds: float
    width: int
    height: int

    @property
    def kbps(self) -> float:
        return self.bytes * 8 / self.seconds / 1000 if self.seconds > 0 else float("nan")


@dataclass(frozen=True)
class MediaInfo:
    width: int
    height: int
    duration: float | None
    fps: float


def media_info(path: str | os.PathLike) -> MediaInfo:
    """Size, duration and frame rate of a video, with the scorer's own one-line errors for bad input."""
    from .source import open_source

    with open_source(path) as src:
        if src.is_image:
            raise InputError(f"{path} is a still image; encoding needs a video")
        return MediaInfo(src.width, src.height, src.duration, src.fps or 25.0)


def resolve_ffmpeg(ffmpeg: str | os.PathLike) -> str:
    """The external ffmpeg as an executable path (a name is looked up on PATH)."""
    found = shutil.which(str(ffmpeg))
    if not found:
        raise InputError(f"--ffmpeg {ffmpeg}: no such executable")
    return found


def _ffmpeg_encoders(ffmpeg: str) -> set[str]:
    out = _run_ffmpeg(ffmpeg, ["-encoders"], "listing its encoders")
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) > 1 and parts[0].startswith("V"):
            names.add(parts[1])
    return names


def check_encoder(encoder: str, ffmpeg: str | None = None) -> EncoderSpec:
    """The encoder's spec, or a one-line error saying what is available instead."""
    if encoder not in ENCODERS:
        raise UnsupportedError(f"unknown encoder {encoder!r}; supported: {', '.join(ENCODERS)}")
    if ffmpeg:
        have = _ffmpeg_encoders(resolve_ffmpeg(ffmpeg))
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


def encoder_options(spec: EncoderSpec, crf: float, preset: str | None) -> dict[str, str]:
    opts = {"crf": f"{crf:g}", **spec.options}
    chosen = preset or spec.preset
    if chosen:
        opts[spec.preset_option] = str(chosen)
    return opts


def scaled_size(width: int, height: int, to_height: int | None) -> tuple[int, int]:
    """(width, height) at ``to_height`` with the aspect ratio kept and both even (4:2:0 needs it)."""
    if not to_height or to_height == height:
        return width - width % 2, height - height % 2
    return max(2, round(width * to_height / height / 2) * 2), to_height - to_height % 2


def encode(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    encoder: str,
    crf: float,
    *,
    height: int | None = None,
    preset: str | None = None,
    ffmpeg: str | None = None,
) -> Encoded:
    """Encode the video stream of ``src`` at ``crf`` (and ``height``, downscaled with Lanczos) into ``dst``."""
    spec = ENCODERS[encoder]
    check_crf(spec, crf)
    opts = encoder_options(spec, crf, preset)
    if ffmpeg:
        args = ["-i", str(src), "-map", "0:v:0", "-an", "-sn", "-dn"]
        if height:
            args += ["-vf", f"scale=-2:{height}:flags={DOWNSCALE}"]
        args += ["-c:v", encoder, "-pix_fmt", PIX_FMT]
        for key, value in opts.items():
            args += [f"-{'b:v' if key == 'b' else key}", value]
        _run_ffmpeg(resolve_ffmpeg(ffmpeg), [*args, str(dst)], f"encoding {Path(src).name} with {encoder} at CRF {crf:g}")
        return describe(dst)
    return transcode(src, dst, encoder, opts, height=height, interpolation=DOWNSCALE)


def lossless_reel(src: str | os.PathLike, dst: str | os.PathLike, spans: Sequence[tuple[float, float]]) -> Encoded:
    """The frames of ``src`` inside the (start, duration) spans, back to back, losslessly (x264 QP 0)."""
    return transcode(src, dst, "libx264", {"qp": "0", "preset": "ultrafast"}, spans=spans)


def upscale(src: str | os.PathLike, dst: str | os.PathLike, size: tuple[int, int]) -> Encoded:
    """``src`` resized to ``size`` (the display size) with bicubic filtering, losslessly (x264 QP 0)."""
    return transcode(src, dst, "libx264", {"qp": "0", "preset": "ultrafast"}, size=size, interpolation=UPSCALE)


def transcode(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    codec: str,
    options: dict[str, str],
    *,
    spans: Sequence[tuple[float, float]] | None = None,
    height: int | None = None,
    size: tuple[int, int] | None = None,
    interpolation: str = UPSCALE,
) -> Encoded:
    """Decode ``src`` once, keep the frames in ``spans`` (all by default), resize, and encode with PyAV."""
    try:
        with av.open(str(src)) as inp:
            if not inp.streams.video:
                raise InputError(f"{src} has no video stream")
            vin = inp.streams.video[0]
            vin.thread_type = "AUTO"
            cin = vin.codec_context
            rate = vin.average_rate or vin.guessed_rate or Fraction(25)
            width, height_out = size or scaled_size(cin.width, cin.height, height)
            with av.open(str(dst), "w") as out:
                stream = out.add_stream(codec, rate=rate, options=options)
                stream.width, stream.height, stream.pix_fmt = width, height_out, PIX_FMT
                cc = stream.codec_context
                for tag in ("colorspace", "color_primaries", "color_trc", "color_range"):
                    setattr(cc, tag, getattr(cin, tag))
                n = 0
                for frame in _span_frames(inp, vin, spans):
                    frame = frame.reformat(width=width, height=height_out, format=PIX_FMT,
                                           interpolation=interpolation.upper())
                    frame.pts, frame.time_base = n, Fraction(1) / rate
                    n += 1
                    for packet in stream.encode(frame):
                        out.mux(packet)
                for packet in stream.encode():
                    out.mux(packet)
    except av.error.FFmpegError as exc:
        Path(dst).unlink(missing_ok=True)
        raise EncodeError(f"{codec} failed on {Path(src).name}: {exc}") from None
    if n == 0:
        raise InputError(f"{src}: no frames in the requested time range")
    return describe(dst)


def _span_frames(inp, vin, spans: Sequence[tuple[float, float]] | None) -> Iterator[av.VideoFrame]:
    """Frames whose time from the first frame falls in any span, decoding no further than the last span."""
    end = max(s + d for s, d in spans) if spans else None
    first = None
    for frame in inp.decode(vin):
        if frame.pts is None:
            continue
        first = frame.pts if first is None else first
        t = float((frame.pts - first) * frame.time_base)
        if end is not None and t >= end:
            return
        if spans is None or any(s <= t < s + d for s, d in spans):
            yield frame


def describe(path: str | os.PathLike) -> Encoded:
    """Size, frame count and duration of an encoded file, read from its packets (nothing is decoded)."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        rate = float(vs.average_rate or vs.guessed_rate or 25)
        frames = sum(1 for p in c.demux(vs) if p.size)
        w, h = vs.codec_context.width, vs.codec_context.height
    return Encoded(Path(path), Path(path).stat().st_size, frames, frames / rate, w, h)


def _run_ffmpeg(ffmpeg: str, args: list[str], what: str) -> str:
    """Run the external ffmpeg (no shell); a failure is one line with its exit code and last message."""
    try:
        proc = subprocess.run([ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
                              capture_output=True, text=True, errors="replace")
    except OSError as exc:
        raise EncodeError(f"could not run {ffmpeg}: {exc.strerror or exc}") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise EncodeError(f"ffmpeg exited with code {proc.returncode} while {what}: {last}")
    return proc.stdout
