"""The PyAV (FFmpeg) frame source: files, named pipes and stdin, with frame access by index and by time.

Frame times are the frames' PTS times the stream time base, counted from the first decoded frame (so a transport
stream starting at 1.4 s starts at 0 here). Indices count frames in presentation order from that first frame.

How frames are reached: in an MP4/MOV or Matroska/WebM file, a pass first reads the frame table from the packets
(:mod:`.seeking`), lets the sampling choose from it, then seeks to the key frame before each chosen frame and decodes
forward to it (frames in one GOP share the decode). Everything else -- stdin, pipes, other containers, streams whose
packets lack timestamps, key-frame sampling (which skips non-key frames in the decoder instead), ``seek=False`` -- is
decoded in one pass from the start, as is a file whose decoded frames ever disagree with its table. Both ways give the
same frames, times and indices.
"""

from __future__ import annotations

import bisect
import functools
import logging
import os
import sys
from collections import deque
from fractions import Fraction
from typing import Iterator, Sequence

import numpy as np

from contrique_video.decode.base import STDIN, FrameSource, ffmpeg_reason, shortfall
from contrique_video.decode.frames import (
    RANGE_JPEG,
    RANGE_MPEG,
    Frame,
    apply_transform,
    display_transform,
    frame_display_matrix,
    frame_to_rgb,
)
from contrique_video.decode.metadata import probe, tagged_matrix
from contrique_video.decode.indices import FrameIndices
from contrique_video.decode.sampler import Sampling, StreamSelector
from contrique_video.decode.seeking import SEEKABLE_CONTAINERS, SeekFailed, Timeline, decode_at, scan
from contrique_video.decode.registry import register_decoder
from contrique_video.errors import ContriqueError, InputError, UnsupportedError

log = logging.getLogger("contrique_video")

# FFmpeg demuxers that turn any text file (.txt, .nfo, ...) into "video" of rendered text.
_TEXT_DEMUXERS = frozenset({"tty", "bin", "xbin", "adf", "idf"})
# What ffmpeg encodes a pipe's video to when no -c:v is given (the muxer's default codec), for the
# muxers whose default is an old lossy codec nobody picks on purpose to carry a picture to a scorer. Muxers
# whose default is a modern one (Matroska, MP4: libx264) are left out: a stream copy (-c:v copy) of an H.264
# file carries the source's "Lavc libx264" encoder tag too, so nothing in the stream tells the two apart.
_FFMPEG_DEFAULT_CODECS = {"nut": "mpeg4", "avi": "mpeg4", "mpegts": "mpeg2video", "mpeg": "mpeg1video",
                          "flv": "flv1", "asf": "msmpeg4v3"}


class PyAVSource(FrameSource):
    """Anything FFmpeg can demux and decode, from a file or from stdin (``"-"``).

    ``seek=False`` forces one decoding pass from the start (what seeking is checked against).
    """

    decoder = "pyav"
    is_image = False

    def __init__(self, path: str | os.PathLike, threads: int = 0, device: str = "cpu", seek: bool = True) -> None:
        import av  # noqa: F401 - imported here so that errors surface on open

        self.path = STDIN if str(path) == STDIN else str(path)
        self._threads = max(0, int(threads))
        self._device = device  # "cuda": NVDEC through gpu_decode, falling back to the CPU with a warning
        self._container = None
        self._timeline: Timeline | None = None
        self._seek = seek and self.path != STDIN and os.path.isfile(self.path)
        self._start()
        self._adopt(probe(self._container, self._stream, self._peeked[0]))
        self._seek = self._seek and self.metadata.container in SEEKABLE_CONTAINERS
        if self.hdr:
            self._warn(f"HDR ({self.hdr.upper()}) video is scored as SDR: the model only knows SDR, and the "
                       f"frames are scored as decoded, without tone mapping")
        if self.path == STDIN:
            self._check_pipe_codec()

    def _check_pipe_codec(self) -> None:
        """Note a piped stream in the codec ffmpeg picks when no -c:v is given: the score is of that re-encode."""
        fmt = self._container.format.name.split(",")[0]
        if self.codec == _FFMPEG_DEFAULT_CODECS.get(fmt):
            self._warn(f"the piped stream is {self.codec} in {fmt}, what ffmpeg encodes to when no -c:v is given, "
                       f"so this scores that lossy re-encode; pipe with -c:v rawvideo (or -c:v copy) to score "
                       f"the source")

    # ------------------------------------------------------------------ opening
    def _open_container(self):
        import av

        from contrique_video.decode.gpu import open_container

        try:
            if self.path == STDIN:
                stdin = sys.stdin
                if stdin is None or (hasattr(stdin, "isatty") and stdin.isatty()):
                    raise InputError(
                        "no input on stdin: pipe a stream into it, e.g. "
                        "ffmpeg -i in.mov -c:v rawvideo -f nut - | contrique-video score -"
                    )
                return open_container(stdin.buffer, self._device, metadata_errors="replace")
            return open_container(self.path, self._device, metadata_errors="replace")
        except ContriqueError:
            raise
        except av.FFmpegError as exc:
            raise InputError(f"{self._where}: not a video or image FFmpeg can read ({ffmpeg_reason(exc)})") from None
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot open {self.path}: {' '.join(str(exc).split())}") from None

    def _start(self) -> None:
        """(Re)open the container, pick the stream, and decode the first frame."""
        container = self._open_container()
        self._container = container
        if container.format.name in _TEXT_DEMUXERS:
            self.close()
            raise InputError(f"{self._where}: not a video or image file (FFmpeg would only render it as text art)")
        streams = [s for s in container.streams.video
                   if not (int(s.disposition) & int(type(s.disposition).attached_pic))]
        if not streams:
            self.close()
            raise InputError(f"{self._where} has no video stream")
        stream = streams[0]
        self._stream = stream
        cc = stream.codec_context
        if cc is None:
            self.close()
            raise UnsupportedError(f"{self._where}: FFmpeg has no decoder for this video stream")
        try:
            # Slice threads only: with frame threads, a decode stopped before the end (every sampled pass)
            # can hang in avcodec_free_context once torch is loaded (PyAV issues 1849/1861; seen here).
            cc.thread_type = "SLICE"
            cc.thread_count = self._threads
        except Exception:  # noqa: BLE001 - threading is an optimisation only
            pass
        self._time_base = stream.time_base or Fraction(1, 90000)
        # Per-pass decoding state.
        self._pkt_pts: list[int] = []  # sorted PTS of every packet demuxed so far
        self._max_dts: int | None = None
        self._packets_without_pts = 0
        self._eof = False
        self._read_to_end = False  # demuxing and decoding ran to the end (not stopped by a closed pass)
        self._decode_errors = 0
        self._decode_error: str | None = None  # the first decoding error's reason
        self._read_error: str | None = None  # why demuxing stopped before the end, if it did
        self._frames_out = 0
        self._gen = self._decoded()
        first = next(self._gen, None)
        if first is None:
            self.close()
            raise InputError(f"{self._where}: no video frame could be decoded")
        self._peeked = [first]
        self._fresh = True
        self._origin = first.pts if first.pts is not None else first.dts
        self._other_streams = len(container.streams) > 1

    # ------------------------------------------------------------------ one pass from the start
    def _decoded(self):
        """Decoded av.VideoFrames in presentation order; records packet timestamps."""
        import av

        container, stream = self._container, self._stream
        try:
            packets = container.demux(stream)
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except av.FFmpegError as exc:
                    self._read_error = ffmpeg_reason(exc)
                    break
                if packet.size:
                    pts = packet.pts if packet.pts is not None else packet.dts
                    if pts is None:
                        self._packets_without_pts += 1
                    else:
                        bisect.insort(self._pkt_pts, pts)
                    if packet.dts is not None and (self._max_dts is None or packet.dts > self._max_dts):
                        self._max_dts = packet.dts
                try:
                    frames = stream.decode(packet)
                except av.FFmpegError as exc:
                    self._decode_errors += 1
                    self._decode_error = self._decode_error or ffmpeg_reason(exc)
                    continue
                for frame in frames:
                    self._frames_out += 1
                    yield frame
            # demux() ends with an empty packet that flushes the decoder; flush again
            # in case reading stopped early on an error.
            try:
                for frame in stream.decode(None):
                    self._frames_out += 1
                    yield frame
            except av.FFmpegError:
                pass
            self._read_to_end = True
        finally:
            self._eof = True

    def _report_damage(self) -> None:
        """One warning for what a damaged or truncated input lost, once decoding has ended (or given up)."""
        problems = []
        if self._read_error:
            problems.append(f"reading stopped at a damaged spot ({self._read_error})")
        if self._decode_errors:
            n = self._decode_errors
            problems.append(f"{n} packet{'s' if n != 1 else ''} could not be decoded ({self._decode_error})")
        if self._read_to_end and self._pkt_pts and self._origin is not None:
            last = float((self._pkt_pts[-1] - self._origin) * self._time_base)
            loose = self._other_streams and not (self._stream.duration and self._stream.time_base)
            problems.append(shortfall(last, self.duration, self.fps, loose))
        self._warn_damage(problems)

    def _frame_time(self, frame, previous: float | None) -> float:
        pts = frame.pts if frame.pts is not None else frame.dts
        if pts is None or self._origin is None:
            step = 1.0 / self.fps if self.fps else 0.04
            return 0.0 if previous is None else previous + step
        return float((pts - self._origin) * self._time_base)

    def _entries(self, keyframes: bool) -> Iterator[tuple[int, float, bool, object]]:
        """``(index, pts_time, is_keyframe, av frame)`` for every frame of one pass from the start."""
        if not self._fresh:
            if self.path == STDIN:
                raise InputError("stdin can only be read once; save the stream to a file to read it twice")
            self.close()
            self._start()
        self._fresh = False
        previous = None
        pending: deque = deque()
        ordinal = 0
        for frame in self._chain():
            self.decoded_frames += 1
            if keyframes:
                # A frame's index is the number of packets presented before it; it is final once a packet
                # with DTS >= its PTS has been read (any later packet is presented after it).
                pending.append(frame)
                while pending and (self._eof or self._ready(pending[0])):
                    f = pending.popleft()
                    previous = self._frame_time(f, previous)
                    yield self._index_from_packets(f), previous, bool(f.key_frame), f
            else:
                previous = self._frame_time(frame, previous)
                yield ordinal, previous, bool(frame.key_frame), frame
                ordinal += 1
        while pending:
            f = pending.popleft()
            previous = self._frame_time(f, previous)
            yield self._index_from_packets(f), previous, bool(f.key_frame), f

    def _chain(self):
        while self._peeked:
            yield self._peeked.pop(0)
        yield from self._gen

    def _ready(self, frame) -> bool:
        pts = frame.pts if frame.pts is not None else frame.dts
        return pts is None or (self._max_dts is not None and self._max_dts >= pts)

    def _index_from_packets(self, frame) -> int:
        pts = frame.pts if frame.pts is not None else frame.dts
        if pts is None or self._origin is None:
            return max(0, self._frames_out - 1)
        return bisect.bisect_left(self._pkt_pts, pts) - bisect.bisect_left(self._pkt_pts, self._origin)

    # ------------------------------------------------------------------ seeking
    def timeline(self) -> Timeline | None:
        """The frame table read from the packets (once per source), or None where this file is decoded in one
        pass (stdin, a pipe, a container without exact seeking, packets without timestamps, ``seek=False``)."""
        if self._seek and self._timeline is None:
            container = self._open_container()
            try:
                stream = container.streams[self._stream.index]
                self._timeline = scan(container, stream, self._origin)
            finally:
                container.close()
            self._seek = self._timeline is not None and self._timeline.read_to_end
        return self._timeline if self._seek else None

    def _seeking_pass(self, timeline: Timeline, chosen: list[tuple[int, float, None]]) -> Iterator[Frame]:
        # The seeks replace whatever the container was doing: the peeked first frame, an earlier pass.
        self._peeked.clear()
        gen, self._gen = self._gen, iter(())
        if hasattr(gen, "close"):
            gen.close()
        self._fresh = False
        self._stream.codec_context.skip_frame = "DEFAULT"
        # The damage report sees what the scan saw; decoding errors make the pass fall back.
        self._pkt_pts, self._read_error, self._read_to_end = list(timeline.pts), None, True
        self._decode_errors = 0
        targets = [index for index, _, _ in chosen]
        for index, frame in decode_at(self._container, self._stream, timeline, targets, self._count):
            yield Frame(index=index, pts_time=timeline.time(index), rgb=self._to_rgb(frame))

    def _count(self) -> None:
        self.decoded_frames += 1

    # ------------------------------------------------------------------ frames
    def frames(self, sampling: Sampling | None = None) -> Iterator[Frame]:
        """Yield the frames ``sampling`` selects (default: ``Sampling()``), in order."""
        sampling = sampling if sampling is not None else Sampling()
        selector = self.selector = sampling.selector(self.duration, self.fps)
        self.decoded_frames = 0
        self.seeked = False
        kept = 0
        timeline = None if selector.keyframes_only else self.timeline()
        if timeline is not None:
            chosen = list(selector.pick(timeline.entries()))
            try:
                for frame in self._seeking_pass(timeline, chosen):
                    kept += 1
                    yield frame
                self.seeked = True
            except SeekFailed as exc:
                log.debug("%s: %s; decoding the whole stream instead", self._where, exc)
                self._seek = False
                selector = self.selector = sampling.selector(self.duration, self.fps)
        if not self.seeked:
            done, kept = kept, 0  # the failed seeking pass gave the first ``done`` of these frames
            keyframes = selector.keyframes_only and self._packets_without_pts == 0
            cc = self._stream.codec_context
            try:
                cc.skip_frame = "NONKEY" if keyframes else "DEFAULT"
            except Exception:  # noqa: BLE001
                keyframes = False
            lazy = isinstance(selector, StreamSelector)  # converted only if chosen when the stream ends
            for index, t, frame in selector.pick(self._entries(keyframes)):
                kept += 1
                if kept > done:
                    yield (Frame(index, t, None, functools.partial(self._to_rgb, frame)) if lazy
                           else Frame(index=index, pts_time=t, rgb=self._to_rgb(frame)))
        self._report_damage()
        if kept == 0:
            raise self._nothing_selected(sampling)

    def get_frames_at(self, indices: Sequence[int]) -> list[Frame]:
        """The frames at these indices (presentation order from 0), in the order asked; seeks where it can."""
        wanted = sorted({int(i) for i in indices})
        if wanted and wanted[0] < 0:
            raise InputError(f"frame index {wanted[0]} is negative")
        found = {f.index: f for f in self.frames(FrameIndices(tuple(wanted)))} if wanted else {}
        missing = [i for i in wanted if i not in found]
        if missing:
            raise InputError(f"{self._where}: no frame {missing[0]} (the video has fewer frames)")
        return [found[int(i)] for i in indices]

    def get_frames_played_at(self, seconds: Sequence[float]) -> list[Frame]:
        """The frames on screen at these times (seconds from the first frame): the last frame that starts at
        or before each. Without a frame table this takes two passes (so not on stdin)."""
        times = [float(t) for t in seconds]
        if any(not t >= 0 for t in times):
            raise InputError("times must be seconds >= 0")
        timeline = self.timeline()
        if timeline is not None:
            starts = [timeline.time(i) for i in range(len(timeline.pts))]
        else:
            starts = [t for _, t, _, _ in self._entries(keyframes=False)]
        return self.get_frames_at([max(0, bisect.bisect_right(starts, t + 1e-6) - 1) for t in times])

    # ------------------------------------------------------------------ colour
    def _to_rgb(self, frame) -> np.ndarray:
        matrix = tagged_matrix(frame, self._stream)
        if matrix is None:
            matrix = "ITU709" if self.metadata.coded_height >= 720 else "ITU601"
        rng = int(frame.color_range or 0)
        if rng not in (RANGE_MPEG, RANGE_JPEG):
            rng = int(self._stream.codec_context.color_range or 0)
        if rng not in (RANGE_MPEG, RANGE_JPEG):
            rng = RANGE_JPEG if frame.format.name.startswith("yuvj") else RANGE_MPEG
        rgb = frame_to_rgb(frame, matrix, rng, threads=self._threads)
        shown = frame_display_matrix(frame)
        transform = display_transform(shown) if shown is not None else self.metadata.transform
        return np.ascontiguousarray(apply_transform(rgb, transform))

    def close(self) -> None:
        container, self._container = self._container, None
        gen, self._gen = getattr(self, "_gen", None), iter(())
        if gen is not None and hasattr(gen, "close"):
            gen.close()
        if container is not None:
            try:
                container.close()
            except Exception:  # noqa: BLE001
                pass


@register_decoder("pyav", requires="av", stdin=True, gpu=True,
                  description="FFmpeg through PyAV; keeps 10-bit depth, seeks exactly, reads stdin, NVDEC with --device cuda")
def open_pyav(path, threads: int, device: str, seek: bool) -> PyAVSource:
    return PyAVSource(path, threads=threads, device=device, seek=seek and path != STDIN)
