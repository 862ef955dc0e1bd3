"""Every encode runs through the ffmpeg CLI, as ab-av1's do: the encodes under test (CRF-search probes, the
final ``--encode``, ladder renditions) and the lossless intermediates (sample reels, display-size upscales).

So a CRF found is the CRF the user's own ffmpeg encodes at: the command this module runs is the one a user
types (``ffmpeg -i SRC -c:v ENC -crf N -preset P -pix_fmt F [-vf CHAIN] [-g K] [--enc options] OUT``), and
ffmpeg decides frame types, GOP and colour tags exactly as it does for them (a decoded frame's own type is
never forced on the encoder). :func:`ffmpeg_args` builds that list; :func:`encode` runs it.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import av

from contrique_video.encoding.probe import Encoded, describe
from contrique_video.errors import ContriqueError, InputError, UnsupportedError
from contrique_video.ffmpeg import (
    LOSSLESS,
    encoder_help,
    ffmpeg_encoders,
    find_ffmpeg,
    generic_codec_options,
    option_names,
    run_ffmpeg,
    scale_lossless,
)

PIX_FMT = "yuv420p"
DOWNSCALE = "lanczos"  # renditions below the source height (ffmpeg's scale flags name)


@dataclass(frozen=True)
class EncoderSpec:
    """How an encoder's quality is set (its CRF-like option and range), how its preset is named, our default
    preset, and options a CRF encode needs (libvpx/libaom are constant quality only with ``-b:v 0``)."""

    name: str
    crf_min: int
    crf_max: int
    preset: str | None = None
    preset_option: str = "preset"
    options: dict = field(default_factory=dict)
    quality_option: str = "crf"


ENCODERS = {
    "libx264": EncoderSpec("libx264", 0, 51, "medium"),
    "libx265": EncoderSpec("libx265", 0, 51, "medium", options={"x265-params": "log-level=error"}),
    "libsvtav1": EncoderSpec("libsvtav1", 1, 63, "8"),
    "libvpx-vp9": EncoderSpec("libvpx-vp9", 0, 63, "4", "cpu-used", {"b": "0", "row-mt": "1"}),
    "libaom-av1": EncoderSpec("libaom-av1", 0, 63, "6", "cpu-used", {"b": "0", "row-mt": "1"}),
    "libvpx": EncoderSpec("libvpx", 4, 63, None, "cpu-used", {"b": "0"}),
    "librav1e": EncoderSpec("librav1e", 0, 255, None, "speed", quality_option="qp"),
}
# Hardware encoders by family (ab-av1's choice of option): the quality option and its usual range; the
# range the binary itself states (``ffmpeg -h encoder=NAME``) wins when it gives one.
FAMILIES = {
    "_nvenc": ("cq", 0, 51),
    "_qsv": ("global_quality", 1, 51),
    "_vaapi": ("qp", 0, 51),
}


@dataclass(frozen=True)
class EncodeSettings:
    """What an encode is asked for beyond encoder and CRF, as ab-av1's encoder arguments: the preset, the
    pixel format, a filter chain run before encoding, the key frame interval, private options (``--enc``),
    and the quality option of an encoder the tables here do not know."""

    preset: str | None = None
    pix_fmt: str = PIX_FMT
    vfilter: str | None = None
    keyint: int | None = None
    extra: tuple[tuple[str, str], ...] = ()
    quality_option: str | None = None

    def record(self) -> dict:
        return {"preset": self.preset, "pix_format": self.pix_fmt, "vfilter": self.vfilter, "keyint": self.keyint,
                "enc": dict(self.extra)}


@functools.lru_cache(maxsize=32)
def encoder_spec(encoder: str, ffmpeg: str | None = None, quality_option: str | None = None) -> EncoderSpec:
    """The encoder's spec: from the table, its hardware family, or (any other ffmpeg encoder) the quality
    option given, else ``-crf`` when the encoder has one; the range from ``ffmpeg -h encoder=NAME``."""
    if encoder in ENCODERS and quality_option in (None, ENCODERS[encoder].quality_option):
        return ENCODERS[encoder]
    family = next((v for k, v in FAMILIES.items() if encoder.endswith(k)), None)
    help_text = encoder_help(encoder, ffmpeg) or ""
    option = quality_option or (family[0] if family else "crf" if re.search(r"^  -crf ", help_text, re.M) else None)
    if option is None:
        raise UnsupportedError(f"encoder {encoder}: no known quality option; name it with --quality-option "
                               f"(e.g. qp, q:v; see `ffmpeg -h encoder={encoder}`)")
    lo, hi = (family[1], family[2]) if family and option == family[0] else (0, 63)
    stated = re.search(rf"^  -{re.escape(option)} .*\(from (-?\d+)(?:\.\d+)? to (\d+)(?:\.\d+)?\)", help_text, re.M)
    if stated:
        lo, hi = max(0, int(stated.group(1))), int(stated.group(2))
    has_preset = re.search(r"^  -preset ", help_text, re.M) is not None
    return EncoderSpec(encoder, lo, hi, None, "preset" if has_preset else "", quality_option=option)


def check_encoder(encoder: str, ffmpeg: str | None = None, quality_option: str | None = None) -> EncoderSpec:
    """The encoder's spec, or a one-line error saying it is not in the ffmpeg that would run it."""
    exe = find_ffmpeg(ffmpeg)
    if encoder not in ffmpeg_encoders(exe):
        known = ", ".join(e for e in ENCODERS if e in ffmpeg_encoders(exe)) or "none"
        raise UnsupportedError(f"encoder {encoder} is not available in {exe} (e.g. {known} are; "
                               "`ffmpeg -encoders` lists all); pass --ffmpeg PATH to an ffmpeg that has it")
    return encoder_spec(encoder, exe, quality_option)


def check_crf(spec: EncoderSpec, crf: float) -> None:
    if not spec.crf_min <= crf <= spec.crf_max:
        raise InputError(f"CRF {crf:g} is outside {spec.name}'s range {spec.crf_min}..{spec.crf_max}")


def encoder_options(spec: EncoderSpec, crf: float, preset: str | None, keyint: int | None = None,
                    extra: Sequence[tuple[str, str]] = ()) -> dict[str, str]:
    """The encoder's options for one encode; ``extra`` (``--enc``) comes last, so it overrides our defaults."""
    opts = {spec.quality_option: f"{crf:g}", **spec.options}
    chosen = preset or spec.preset
    if chosen and spec.preset_option:
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
        if key in ("crf", "qp", "cq", "global_quality"):
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
    exe = find_ffmpeg(ffmpeg)
    help_text = encoder_help(encoder, exe) or ""
    supported = [line.split(":", 1)[1].split() for line in help_text.splitlines() if "Supported pixel formats:" in line]
    if supported and settings.pix_fmt not in supported[0]:
        raise InputError(f"--pix-format {settings.pix_fmt}: {encoder} cannot encode it; it takes {', '.join(supported[0])}")
    if settings.extra and help_text:
        known = option_names(help_text) | generic_codec_options(exe) | {"b:v"}
        for key, _ in settings.extra:
            if key not in known:
                raise InputError(f"--enc {key}: {encoder} has no such option (see `ffmpeg -h encoder={encoder}`)")
    if settings.keyint is not None and settings.keyint < 1:
        raise InputError(f"--keyint {settings.keyint}: give a positive number of frames")
    if settings.vfilter:
        check_vfilter(settings.vfilter, exe)


@functools.lru_cache(maxsize=16)
def check_vfilter(chain: str, ffmpeg: str | None = None) -> None:
    """Run the chain on one small grey frame, in the ffmpeg that will encode, so a typo fails before the search."""
    try:
        run_ffmpeg(find_ffmpeg(ffmpeg), ["-f", "lavfi", "-i", "color=gray:s=64x64:d=0.04", "-vf", chain,
                                         "-f", "null", "-"], f"checking --vfilter {chain!r}")
    except ContriqueError as exc:
        raise InputError(f"--vfilter {chain!r}: {str(exc).rsplit(': ', 1)[-1]}") from None


def ffmpeg_args(src: str | os.PathLike, dst: str | os.PathLike, encoder: str, crf: float, *,
                settings: EncodeSettings | None = None, height: int | None = None, audio: bool = False,
                ffmpeg: str | None = None) -> list[str]:
    """The ffmpeg arguments (after the binary) of one encode: what a user would type for it.

    The first video stream is encoded; ``audio`` copies the audio streams (a final encode keeps its sound),
    else there is none. ``height`` scales to that height (width even, aspect kept, Lanczos) after the
    user's filter chain, as a ladder rendition."""
    settings = settings or EncodeSettings()
    spec = encoder_spec(encoder, find_ffmpeg(ffmpeg), settings.quality_option)
    opts = encoder_options(spec, crf, settings.preset, settings.keyint, settings.extra)
    filters = [f for f in (settings.vfilter, height and f"scale=-2:{height - height % 2}:flags={DOWNSCALE}") if f]
    args = ["-i", str(src), "-map", "0:v:0"] + (["-map", "0:a?", "-c:a", "copy"] if audio else ["-an"])
    args += ["-sn", "-dn", "-c:v", encoder]
    for key, value in opts.items():
        args += [f"-{'b:v' if key == 'b' else key}", value]
    args += ["-pix_fmt", settings.pix_fmt] + (["-vf", ",".join(filters)] if filters else [])
    return [*args, str(dst)]


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
    on_progress: Callable[[int], None] | None = None,
) -> Encoded:
    """Encode ``src`` at ``crf`` into ``dst`` with the ffmpeg CLI (see :func:`ffmpeg_args`); a ``preset``
    given directly wins over the settings' preset. ``on_progress`` is told the frames encoded so far."""
    settings = settings or EncodeSettings()
    if preset:
        settings = replace(settings, preset=preset)
    exe = find_ffmpeg(ffmpeg)
    check_crf(encoder_spec(encoder, exe, settings.quality_option), crf)
    args = ffmpeg_args(src, dst, encoder, crf, settings=settings, height=height, audio=audio, ffmpeg=exe)
    try:
        run_ffmpeg(exe, args, f"encoding {Path(src).name} with {encoder} at CRF {crf:g}", on_progress=on_progress)
    except BaseException:
        Path(dst).unlink(missing_ok=True)
        raise
    return describe(dst)


def lossless_reel(src: str | os.PathLike, dst: str | os.PathLike, spans: Sequence[tuple[float, float]],
                  ffmpeg: str | None = None) -> Encoded:
    """The frames of ``src`` inside the (start, duration) spans, back to back, losslessly (FFV1) in the
    source's own pixel format, frame rate and timestamps: each span is cut by ffmpeg's accurate input
    seeking and the cuts are joined by its concat filter, so a probe encodes what a full encode would see."""
    args: list[str] = []
    for start, length in spans:
        args += ["-ss", f"{start:.6f}", "-t", f"{length:.6f}", "-i", str(src)]
    joined = "".join(f"[{i}:v:0]" for i in range(len(spans))) + f"concat=n={len(spans)}:v=1:a=0[v]"
    args += ["-filter_complex", joined, "-map", "[v]", *LOSSLESS, str(dst)]
    run_ffmpeg(find_ffmpeg(ffmpeg), args, f"cutting samples of {Path(src).name}")
    reel = describe(dst)
    if reel.frames == 0:
        raise InputError(f"{src}: no frames in the requested time range")
    return reel


def upscale(src: str | os.PathLike, dst: str | os.PathLike, size: tuple[int, int], ffmpeg: str | None = None) -> Encoded:
    """``src`` resized to ``size`` (the display size) with bicubic filtering, losslessly (FFV1)."""
    return describe(scale_lossless(src, dst, size, ffmpeg))
