"""The PyAV encode pass: decode a source once, keep the frames of some spans, run a filter chain, resize,
and encode, copying the colour tags (and, for a whole input, the audio) of the source."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import av

from contrique_video.encoding.probe import Encoded, describe
from contrique_video.errors import EncodeError, InputError

PIX_FMT = "yuv420p"
DOWNSCALE = "lanczos"  # renditions below the source height (ffmpeg's scale flags name)
UPSCALE = "bicubic"  # back to the display size, as VMAF practice does (ffmpeg's scale filter default)


def scaled_size(width: int, height: int, to_height: int | None) -> tuple[int, int]:
    """(width, height) at ``to_height`` with the aspect ratio kept and both even (4:2:0 needs it)."""
    if not to_height or to_height == height:
        return width - width % 2, height - height % 2
    return max(2, round(width * to_height / height / 2) * 2), to_height - to_height % 2


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

