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

import functools
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from contrique_video.errors import EncodeError, InputError, UnsupportedError

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
    from contrique_video.decode import open_source

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


@functools.lru_cache(maxsize=16)
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


@functools.lru_cache(maxsize=16)
def _encoder_help(encoder: str, ffmpeg: str | None) -> str | None:
    """``ffmpeg -h encoder=NAME`` of the user's ffmpeg, else of imageio-ffmpeg's (None if neither exists)."""
    exe = resolve_ffmpeg(ffmpeg) if ffmpeg else _bundled_ffmpeg()
    text = _run_ffmpeg(exe, ["-h", f"encoder={encoder}"], f"asking about {encoder}") if exe else None
    return text if text and f"Encoder {encoder}" in text else None  # a build without it: nothing to check against


def _bundled_ffmpeg() -> str | None:
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return None


def _option_names(help_text: str) -> set[str]:
    return {line.split()[0][1:] for line in help_text.splitlines() if line.startswith("  -") and len(line.split()) > 1}


@functools.lru_cache(maxsize=4)
def generic_codec_options(ffmpeg: str | None) -> set[str]:
    """Options every encoder takes (FFmpeg's AVCodecContext options: g, bf, maxrate, ...)."""
    exe = resolve_ffmpeg(ffmpeg) if ffmpeg else _bundled_ffmpeg()
    if not exe:
        return set()
    text = _run_ffmpeg(exe, ["-h", "full"], "listing its options")
    section = text.split("AVCodecContext AVOptions:", 1)[-1].split("\n\n", 1)[0]
    return _option_names(section)


def check_settings(encoder: str, settings: EncodeSettings, ffmpeg: str | None = None) -> None:
    """Refuse, in one line each, a pixel format the encoder cannot take, an option it does not have, or a
    filter chain that does not parse, before anything is encoded."""
    try:
        av.VideoFormat(settings.pix_fmt)
    except (ValueError, TypeError):
        raise InputError(f"--pix-format {settings.pix_fmt}: no such pixel format (e.g. yuv420p, yuv420p10le)") from None
    # Every encoder here takes yuv420p (the default), so the external ffmpeg is only asked about others.
    help_text = _encoder_help(encoder, ffmpeg) if settings.extra or (ffmpeg and settings.pix_fmt != PIX_FMT) else None
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
        known = _option_names(help_text) | generic_codec_options(ffmpeg) | {"b:v"}
        for key, _ in settings.extra:
            if key not in known:
                raise InputError(f"--enc {key}: {encoder} has no such option (see `ffmpeg -h encoder={encoder}`)")
    if settings.keyint is not None and settings.keyint < 1:
        raise InputError(f"--keyint {settings.keyint}: give a positive number of frames")
    if settings.vfilter:
        check_vfilter(settings.vfilter, ffmpeg)


def split_filters(chain: str) -> list[tuple[str, str | None]]:
    """A filter chain (``scale=1280:-2,hqdn3d``) as (name, arguments) pairs. Commas inside quotes or
    escaped with a backslash stay in the arguments; labelled graphs (``[in]``, ``;``) need --ffmpeg."""
    parts, current, quote, escaped = [], [], None, False
    for ch in chain:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            current.append(ch)
            escaped = True
        elif quote:
            current.append(ch)
            quote = None if ch == quote else quote
        elif ch in "'\"":
            current.append(ch)
            quote = ch
        elif ch == ",":
            parts.append("".join(current))
            current = []
        elif ch in "[];":
            raise InputError(f"--vfilter {chain!r}: only a chain of filters separated by commas runs in PyAV; "
                             "pass --ffmpeg PATH for a labelled filter graph")
        else:
            current.append(ch)
    parts.append("".join(current))
    pairs = []
    for part in parts:
        name, sep, args = part.strip().partition("=")
        if not name:
            raise InputError(f"--vfilter {chain!r}: an empty filter in the chain")
        pairs.append((name.strip(), args if sep else None))
    return pairs


def filter_graph(chain: str, template) -> tuple[av.filter.Graph, object, object]:
    """A configured PyAV filter graph running ``chain`` on frames like ``template``: (graph, source, sink)."""
    graph = av.filter.Graph()
    src = graph.add_buffer(width=template.width, height=template.height, format=template.format.name,
                           time_base=template.time_base or Fraction(1, 25))
    last = src
    for name, args in split_filters(chain):
        try:
            node = graph.add(name, args) if args is not None else graph.add(name)
        except (ValueError, av.error.FFmpegError) as exc:
            raise InputError(f"--vfilter: filter {name!r} with arguments {args!r} is refused: {exc}") from None
        last.link_to(node)
        last = node
    sink = graph.add("buffersink")
    last.link_to(sink)
    try:
        graph.configure()
    except (ValueError, av.error.FFmpegError) as exc:
        raise InputError(f"--vfilter {chain!r}: {exc}") from None
    return graph, src, sink


@functools.lru_cache(maxsize=16)
def check_vfilter(chain: str, ffmpeg: str | None = None) -> None:
    """Run the chain on one small grey frame, in the ffmpeg that will encode, so a typo fails before the search."""
    if ffmpeg:
        _run_ffmpeg(resolve_ffmpeg(ffmpeg), ["-f", "lavfi", "-i", "color=gray:s=64x64:d=0.04", "-vf", chain,
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
        _run_ffmpeg(resolve_ffmpeg(ffmpeg), [*args, str(dst)], f"encoding {Path(src).name} with {encoder} at CRF {crf:g}")
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
    pix_fmt: str = PIX_FMT,
    vfilter: str | None = None,
    audio: bool = False,
) -> Encoded:
    """Decode ``src`` once, keep the frames in ``spans`` (all by default), run ``vfilter`` (a filter chain),
    resize, and encode with PyAV in ``pix_fmt``; ``audio`` copies the audio streams (whole input only)."""
    try:
        with av.open(str(src)) as inp:
            if not inp.streams.video:
                raise InputError(f"{src} has no video stream")
            vin = inp.streams.video[0]
            vin.thread_type = "SLICE"  # not frame threads: see decode.pyav.PyAVSource._start
            cin = vin.codec_context
            rate = vin.average_rate or vin.guessed_rate or Fraction(25)
            width, height_out = size or scaled_size(cin.width, cin.height, height)
            with av.open(str(dst), "w") as out:
                stream = out.add_stream(codec, rate=rate, options=options)
                stream.pix_fmt = pix_fmt
                cc = stream.codec_context
                for tag in ("colorspace", "color_primaries", "color_trc", "color_range"):
                    setattr(cc, tag, getattr(cin, tag))
                n = 0
                sound = AudioCopy(out, inp.streams.audio if audio and spans is None else ())
                frames = _span_frames(sound.demux(inp, vin), spans)
                if vfilter:
                    frames = _filtered(frames, vfilter)
                for frame in frames:
                    if n == 0:  # the filter chain may change the size: the encoder takes the first frame's
                        if vfilter:
                            width, height_out = size or scaled_size(frame.width, frame.height, height)
                        stream.width, stream.height = width, height_out
                    frame = frame.reformat(width=width, height=height_out, format=pix_fmt,
                                           interpolation=interpolation.upper())
                    frame.pts, frame.time_base = n, Fraction(1) / rate
                    n += 1
                    for packet in stream.encode(frame):
                        out.mux(packet)
                        sound.start()
                for packet in stream.encode():
                    out.mux(packet)
                    sound.start()
                sound.start()
    except av.error.FFmpegError as exc:
        Path(dst).unlink(missing_ok=True)
        raise EncodeError(f"{codec} failed on {Path(src).name}: {exc}") from None
    if n == 0:
        raise InputError(f"{src}: no frames in the requested time range")
    return describe(dst)


def _filtered(frames: Iterator[av.VideoFrame], chain: str) -> Iterator[av.VideoFrame]:
    """Frames through a PyAV filter graph running ``chain``; the graph is built on the first frame."""
    graph = None
    for frame in frames:
        if graph is None:
            graph, _, _ = filter_graph(chain, frame)
        graph.push(frame)
        yield from _drain(graph)
    if graph is not None:
        graph.push(None)
        yield from _drain(graph)


def _drain(graph) -> Iterator[av.VideoFrame]:
    while True:
        try:
            yield graph.pull()
        except (av.error.BlockingIOError, av.error.EOFError):
            return


class AudioCopy:
    """Audio packets copied beside a video encode. They wait until the first video packet is written
    (the output's header needs the video size, known only from the first frame), and are shifted so the
    sound stays in sync with the video, which is renumbered from time 0."""

    def __init__(self, out, streams):
        self.out = out
        self.map = {s.index: out.add_stream_from_template(s) for s in streams}
        self.pending: list = []
        self.started = False
        self.video_start: float | None = None  # seconds: the input's first video frame time

    def demux(self, inp, vin) -> Iterator[av.VideoFrame]:
        """Decoded video frames of ``inp``; audio packets met on the way are copied (or held)."""
        if not self.map:
            yield from inp.decode(vin)
            return
        for packet in inp.demux(vin, *(inp.streams[i] for i in self.map)):
            if packet.stream.type == "video":
                for frame in packet.decode():
                    if self.video_start is None and frame.pts is not None:
                        self.video_start = float(frame.pts * frame.time_base)
                    yield frame
            elif packet.dts is not None and packet.size:
                self.pending.append(packet)
                if self.started:
                    self._flush()

    def start(self) -> None:
        """The first video packet is written: audio may follow."""
        self.started = True
        self._flush()

    def _flush(self) -> None:
        for packet in self.pending:
            shift = round((self.video_start or 0.0) / packet.time_base)
            packet.pts = None if packet.pts is None else packet.pts - shift
            packet.dts -= shift  # may go below 0 (e.g. AAC priming): the muxer shifts or edits it, as ffmpeg's
            packet.stream = self.map[packet.stream.index]
            self.out.mux(packet)
        self.pending = []


def _span_frames(decoded: Iterator[av.VideoFrame], spans: Sequence[tuple[float, float]] | None) -> Iterator[av.VideoFrame]:
    """Frames whose time from the first frame falls in any span, decoding no further than the last span."""
    end = max(s + d for s, d in spans) if spans else None
    first = None
    for frame in decoded:
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
