"""Frame sources: decode videos (PyAV or decord) and still images (Pillow) to RGB arrays.

``open_source(path)`` returns a :class:`FrameSource`; iterate ``source.frames(sampling)`` to
get :class:`Frame` objects for the frames a :class:`~contrique_video.decode.sampler.Sampling`
selects. Decoding stops as soon as the sampling is satisfied, and only kept frames are
converted to RGB.

Colour handling (PyAV backend):

- The Y'CbCr matrix is the stream's when it is tagged; untagged video uses BT.709 when
  its height is 720 or more and BT.601 otherwise. The range is the tagged one ("tv" /
  MPEG limited, or "pc" / JPEG full; ``yuvj*`` formats are full); untagged means limited.
  Output is always full-range RGB.
- 8-bit sources come out as ``uint8``. Sources with more than 8 bits come out as
  ``uint16`` on the full 0..65535 scale: swscale upsamples chroma to 16-bit 4:4:4 (a
  lossless bit shift) and the matrix is applied here in float, because swscale's own
  16-bit RGB output tops out at 65283 for limited-range input.
- The display matrix (rotation, and flips) that MP4/MOV files carry, e.g. phone videos
  shot in portrait, is applied, so ``width``/``height`` and the arrays are as displayed.

Frame times are the frames' PTS times the stream time base, counted from the first
decoded frame (so a transport stream starting at 1.4 s starts at 0 here). Indices count
frames in presentation order from that first frame.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import sys
import warnings
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from contrique_video.decode.sampler import Sampling
from contrique_video.errors import ContriqueError, InputError, UnsupportedError

log = logging.getLogger("contrique_video")

DECODERS = ("pyav", "decord")
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
STDIN = "-"

# AVColorSpace values (libavutil/pixfmt.h) -> swscale matrix names understood by PyAV.
_AVCOL_SPC_TO_SWS = {
    1: "ITU709",  # BT709
    4: "FCC",
    5: "ITU601",  # BT470BG
    6: "ITU601",  # SMPTE170M
    7: "SMPTE240M",
    9: "BT2020",  # BT2020_NCL
    10: "BT2020",  # BT2020_CL (approximated by the non-constant-luminance matrix)
}
# (Kr, Kb) of each matrix, for the >8-bit path that applies the matrix itself.
_KR_KB = {
    "ITU709": (0.2126, 0.0722),
    "ITU601": (0.299, 0.114),
    "SMPTE240M": (0.212, 0.087),
    "FCC": (0.30, 0.11),
    "BT2020": (0.2627, 0.0593),
}
# FFmpeg demuxers that turn any text file (.txt, .nfo, ...) into "video" of rendered text.
_TEXT_DEMUXERS = frozenset({"tty", "bin", "xbin", "adf", "idf"})
_AVCOL_RANGE_MPEG = 1
_AVCOL_RANGE_JPEG = 2
# AVColorTransferCharacteristic values of HDR transfer functions -> the record's "hdr" value.
_AVCOL_TRC_HDR = {16: "pq", 18: "hlg"}  # SMPTE ST 2084, ARIB STD-B67
# What ffmpeg encodes a pipe's video to when no -c:v is given (the muxer's default codec), for the
# muxers whose default is an old lossy codec nobody picks on purpose to carry a picture to a scorer.
_FFMPEG_DEFAULT_CODECS = {"nut": "mpeg4", "avi": "mpeg4", "mpegts": "mpeg2video", "mpeg": "mpeg1video",
                          "flv": "flv1", "asf": "msmpeg4v3"}
# Muxers whose default encoder is a modern one (libx264 at CRF 23, libvpx-vp9): a stream of that codec
# may be a copy, so it only counts as ffmpeg's default re-encode when ffmpeg's encoder tag says so.
_FFMPEG_DEFAULT_ENCODERS = {"matroska": "libx264", "webm": "libvpx-vp9", "mp4": "libx264", "mov": "libx264"}


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded frame, as displayed."""

    index: int  # 0-based position in presentation order in the whole stream
    pts_time: float  # seconds from the first frame, from PTS * time_base; 0.0 for stills
    rgb: np.ndarray  # HxWx3 RGB, C-contiguous; uint8 (8-bit sources) or uint16 (0..65535)


# --------------------------------------------------------------------------- helpers


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _ffmpeg_reason(exc: BaseException) -> str:
    """A short reason from a PyAV/FFmpeg exception, without the repeated file name."""
    strerror = getattr(exc, "strerror", None)
    return _one_line(strerror or exc) or type(exc).__name__


def _display_transform(matrix: np.ndarray | None) -> tuple[bool, bool, bool]:
    """(transpose, flip_rows, flip_cols) that turn a decoded array into the displayed one.

    ``matrix`` is FFmpeg's 3x3 display matrix (row-major int32, 16.16 fixed point) that
    maps a stored pixel (x, y) to (a*x + c*y, b*x + d*y) on screen. Angles that are not a
    multiple of 90 degrees are rounded to the nearest one.
    """
    if matrix is None:
        return (False, False, False)
    a, b, c, d = (float(matrix[i]) for i in (0, 1, 3, 4))
    if abs(a) + abs(d) >= abs(b) + abs(c):
        # x' ~ a*x, y' ~ d*y
        return (False, d < 0, a < 0)
    # x' ~ c*y, y' ~ b*x: the array is transposed, then mirrored as the signs say.
    return (True, b < 0, c < 0)


def _apply_transform(arr: np.ndarray, transform: tuple[bool, bool, bool]) -> np.ndarray:
    transpose, flip_rows, flip_cols = transform
    if transpose:
        arr = arr.transpose(1, 0, 2)
    if flip_rows:
        arr = arr[::-1]
    if flip_cols:
        arr = arr[:, ::-1]
    return arr


def _frame_display_matrix(frame) -> np.ndarray | None:
    try:
        side_data = frame.side_data
        for item in side_data:
            if str(item.type).endswith("DISPLAYMATRIX"):
                raw = bytes(item)
                if len(raw) >= 36:
                    return np.frombuffer(raw[:36], dtype="<i4" if sys.byteorder == "little" else ">i4")
    except Exception:  # noqa: BLE001 - side data is best effort
        return None
    return None


def _exif_transform(orientation: int) -> tuple[bool, bool, bool]:
    """EXIF orientation (1..8) -> (transpose, flip_rows, flip_cols) giving the upright image."""
    return {
        1: (False, False, False),
        2: (False, False, True),  # mirrored horizontally
        3: (False, True, True),  # rotated 180
        4: (False, True, False),  # mirrored vertically
        5: (True, False, False),  # transposed
        6: (True, False, True),  # needs 90 degrees clockwise
        7: (True, True, True),  # transversed
        8: (True, True, False),  # needs 90 degrees counter-clockwise
    }.get(int(orientation), (False, False, False))


def _check_path(path: Path) -> None:
    if not path.exists():
        raise InputError(f"no such file: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a video or image file")
    if not path.is_file():
        return  # a named pipe or device (e.g. bash's <(ffmpeg ...)): let FFmpeg read it
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"cannot read {path}: {_one_line(exc.strerror or exc)}") from None
    if size == 0:
        raise InputError(f"{path} is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise InputError(f"cannot read {path}: permission denied")


# --------------------------------------------------------------------------- base class


class FrameSource:
    """A video or image that yields RGB frames. Use as a context manager."""

    path: str
    width: int
    height: int
    duration: float | None
    fps: float | None
    bit_depth: int
    is_image: bool
    codec: str
    decoder: str

    #: Frames the decoder produced during the last :meth:`frames` call (a test hook for
    #: "decoding stopped early"; for decord, the frames it was asked for).
    decoded_frames: int = 0
    #: "pq" or "hlg" for a stream tagged with an HDR transfer function (it is scored as decoded, as SDR).
    hdr: str | None = None

    @property
    def warnings(self) -> list[str]:
        """Short notes about what may make the score misleading (HDR, damage, a lossy pipe), for the record."""
        return self.__dict__.setdefault("_warnings", [])

    @property
    def _where(self) -> str:
        return "stdin" if self.path == STDIN else self.path

    def _warn(self, text: str) -> None:
        """Say ``text`` once on stderr (a warning naming the input) and keep it for the record."""
        if text not in self.warnings:
            self.warnings.append(text)
            log.warning("%s: %s", self._where, text)

    def frames(self, sampling: Sampling | None = None) -> Iterator[Frame]:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "image" if self.is_image else "video"
        return (
            f"<{type(self).__name__} {self.path!r} {kind} {self.width}x{self.height} "
            f"{self.codec} {self.bit_depth}-bit>"
        )


# --------------------------------------------------------------------------- PyAV


class PyAVSource(FrameSource):
    """Anything FFmpeg can demux and decode, from a file or from stdin (``"-"``)."""

    decoder = "pyav"
    is_image = False

    def __init__(self, path: str | os.PathLike, threads: int = 0, device: str = "cpu") -> None:
        import av  # noqa: F401 - imported here so that errors surface on open

        self.path = STDIN if str(path) == STDIN else str(path)
        self._threads = max(0, int(threads))
        self._device = device  # "cuda": NVDEC through gpu_decode, falling back to the CPU with a warning
        self._container = None
        self.decoded_frames = 0
        self._start()
        self._check_hdr()
        if self.path == STDIN:
            self._check_pipe_codec()

    def _check_hdr(self) -> None:
        """Note a PQ or HLG stream: the model and head only know SDR, and frames are not tone mapped."""
        first = self._peeked[0]
        trc = int(getattr(first, "color_trc", 0) or 0) or int(self._stream.codec_context.color_trc or 0)
        self.hdr = _AVCOL_TRC_HDR.get(trc)
        if self.hdr:
            self._warn(f"HDR ({self.hdr.upper()}) video is scored as SDR: the model only knows SDR, and the "
                       f"frames are scored as decoded, without tone mapping")

    def _check_pipe_codec(self) -> None:
        """Note a piped stream in the codec ffmpeg picks when no -c:v is given: the score is of that re-encode."""
        fmt = self._container.format.name.split(",")[0]
        tag = next((str(v) for k, v in self._stream.metadata.items() if k.lower() == "encoder"), "")
        default = _FFMPEG_DEFAULT_CODECS.get(fmt)
        encoder = _FFMPEG_DEFAULT_ENCODERS.get(fmt)
        if self.codec == default or (encoder and tag.startswith("Lavc") and tag.split()[-1] == encoder):
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
            where = "stdin" if self.path == STDIN else self.path
            raise InputError(
                f"{where}: not a video or image FFmpeg can read ({_ffmpeg_reason(exc)})"
            ) from None
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot open {self.path}: {_one_line(exc)}") from None

    def _start(self) -> None:
        """(Re)open the container, pick the stream, and decode the first frame."""
        container = self._open_container()
        self._container = container
        where = "stdin" if self.path == STDIN else self.path
        if container.format.name in _TEXT_DEMUXERS:
            self.close()
            raise InputError(f"{where}: not a video or image file (FFmpeg would only render it as text art)")
        streams = [
            s
            for s in container.streams.video
            if not (int(s.disposition) & int(type(s.disposition).attached_pic))
        ]
        if not streams:
            self.close()
            raise InputError(f"{where} has no video stream")
        stream = streams[0]
        self._stream = stream
        cc = stream.codec_context
        if cc is None:
            self.close()
            raise UnsupportedError(f"{where}: FFmpeg has no decoder for this video stream")
        try:
            # Slice threads only: with frame threads, a decode stopped before the end (every sampled pass)
            # can hang in avcodec_free_context once torch is loaded (PyAV issues 1849/1861; seen here).
            cc.thread_type = "SLICE"
            cc.thread_count = self._threads
        except Exception:  # noqa: BLE001 - threading is an optimisation only
            pass
        self._time_base = stream.time_base or Fraction(1, 90000)
        self.codec = cc.name or "unknown"

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
        self._peeked: list = []
        first = next(self._gen, None)
        if first is None:
            self.close()
            raise InputError(f"{where}: no video frame could be decoded")
        self._peeked.append(first)
        self._fresh = True

        # Properties, from the stream and the first frame.
        self._origin = first.pts if first.pts is not None else first.dts
        self._transform = _display_transform(_frame_display_matrix(first))
        w, h = first.width, first.height
        self._coded_height = h
        self.width, self.height = (h, w) if self._transform[0] else (w, h)
        fmt = first.format
        bits = [c.bits for c in fmt.components if not c.is_alpha]
        self.bit_depth = 8 if fmt.has_palette or not bits else max(bits)
        self.fps = self._rate(stream)
        self.duration = self._duration(container, stream)
        self._own_duration = bool(stream.duration and stream.time_base)
        self._other_streams = len(container.streams) > 1

    @staticmethod
    def _rate(stream) -> float | None:
        for rate in (stream.average_rate, getattr(stream, "guessed_rate", None)):
            if rate:
                value = float(rate)
                if value > 0 and math.isfinite(value):
                    return value
        return None

    def _duration(self, container, stream) -> float | None:
        if stream.duration and stream.time_base:
            value = float(stream.duration * stream.time_base)
            if value > 0:
                return value
        if container.duration and container.duration > 0:
            return container.duration / 1_000_000
        return None

    # ------------------------------------------------------------------ decoding
    def _decoded(self):
        """Decoded av.VideoFrames in presentation order; records packet timestamps."""
        import av

        container, stream = self._container, self._stream
        pts_list = self._pkt_pts
        try:
            packets = container.demux(stream)
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except av.FFmpegError as exc:
                    self._read_error = _ffmpeg_reason(exc)
                    break
                if packet.size:
                    pts = packet.pts if packet.pts is not None else packet.dts
                    if pts is None:
                        self._packets_without_pts += 1
                    else:
                        bisect.insort(pts_list, pts)
                    if packet.dts is not None and (self._max_dts is None or packet.dts > self._max_dts):
                        self._max_dts = packet.dts
                try:
                    frames = stream.decode(packet)
                except av.FFmpegError as exc:
                    self._decode_errors += 1
                    self._decode_error = self._decode_error or _ffmpeg_reason(exc)
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
        if self._read_to_end and self.duration and self._pkt_pts and self._origin is not None:
            interval = 1.0 / self.fps if self.fps else 0.04
            decoded = float((self._pkt_pts[-1] - self._origin) * self._time_base) + interval
            # Containers round durations, and one whose duration is not the video's own (MKV, TS) may
            # count a longer audio track: allow 1.5 frames, and half a second when other streams exist.
            slack = 1.5 * interval + (0.5 if self._other_streams and not self._own_duration else 0.0)
            if decoded < self.duration - slack:
                problems.append(f"the video decodes to {decoded:.2f} s of the {self.duration:.2f} s the container "
                                f"declares (truncated?)")
        if problems:
            self._warn("damaged or truncated: " + "; ".join(problems) + "; scored what decodes")

    def _restart(self) -> None:
        if self.path == STDIN:
            raise InputError("stdin can only be read once; save the stream to a file to read it twice")
        self.close()
        self._start()

    def _frame_time(self, frame, previous: float | None) -> float:
        pts = frame.pts if frame.pts is not None else frame.dts
        if pts is None or self._origin is None:
            step = 1.0 / self.fps if self.fps else 0.04
            return 0.0 if previous is None else previous + step
        return float((pts - self._origin) * self._time_base)

    def frames(self, sampling: Sampling | None = None) -> Iterator[Frame]:
        """Yield the frames ``sampling`` selects (default: ``Sampling()``), in order."""
        sampling = sampling if sampling is not None else Sampling()
        if not self._fresh:
            self._restart()
        self._fresh = False
        selector = sampling.selector(self.duration, self.fps)
        # Key-frame sampling lets the decoder skip everything else; frame indices then
        # come from the packet timestamps (needs every packet to carry one).
        keyframes = selector.keyframes_only and self._packets_without_pts == 0
        cc = self._stream.codec_context
        try:
            cc.skip_frame = "NONKEY" if keyframes else "DEFAULT"
        except Exception:  # noqa: BLE001
            keyframes = False
        previous_time = None
        pending: deque = deque()
        kept = 0
        last = None  # (frame, index, time) of the last frame in range that was not kept

        def emit(frame, index):
            nonlocal previous_time, kept, last
            t = self._frame_time(frame, previous_time)
            previous_time = t
            if selector.offer(index, t, bool(frame.key_frame)):
                kept += 1
                return Frame(index=index, pts_time=t, rgb=self._to_rgb(frame))
            if not selector.done and t >= selector.start - 1e-6:
                last = (frame, index, t)
            return None

        self.decoded_frames = 0
        ordinal = 0
        for frame in self._chain():
            self.decoded_frames += 1
            if not keyframes:
                out = emit(frame, ordinal)
                ordinal += 1
                if out is not None:
                    yield out
            else:
                pending.append(frame)
                # A frame's index is the number of packets presented before it; it is
                # final once a packet with DTS >= its PTS has been read (any later
                # packet is presented after it).
                while pending and not selector.done and (self._eof or self._ready(pending[0])):
                    f = pending.popleft()
                    out = emit(f, self._index_from_packets(f))
                    if out is not None:
                        yield out
            if selector.done:
                break
        while pending and not selector.done:
            f = pending.popleft()
            out = emit(f, self._index_from_packets(f))
            if out is not None:
                yield out
        self._report_damage()
        if kept == 0 and selector.fallback_last and last is not None:
            frame, index, t = last
            kept = 1
            yield Frame(index=index, pts_time=t, rgb=self._to_rgb(frame))
        if kept == 0:
            raise InputError(
                f"{self._where}: no frames in the selected range ({sampling.describe()}; "
                f"{self.decoded_frames} frames decoded)"
            )

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

    # ------------------------------------------------------------------ colour
    def _tagged_matrix(self, frame) -> str | None:
        """The swscale matrix name the frame or stream is tagged with, or None."""
        matrix = _AVCOL_SPC_TO_SWS.get(int(frame.colorspace or 0))
        if matrix is None:
            matrix = _AVCOL_SPC_TO_SWS.get(int(self._stream.codec_context.colorspace or 0))
        return matrix

    def _matrix_and_range(self, frame) -> tuple[str, int]:
        matrix = self._tagged_matrix(frame)
        if matrix is None:
            matrix = "ITU709" if self._coded_height >= 720 else "ITU601"
        rng = int(frame.color_range or 0)
        if rng not in (_AVCOL_RANGE_MPEG, _AVCOL_RANGE_JPEG):
            rng = int(self._stream.codec_context.color_range or 0)
        if rng not in (_AVCOL_RANGE_MPEG, _AVCOL_RANGE_JPEG):
            rng = _AVCOL_RANGE_JPEG if frame.format.name.startswith("yuvj") else _AVCOL_RANGE_MPEG
        return matrix, rng

    def _to_rgb(self, frame) -> np.ndarray:
        rgb = frame_to_rgb(frame, *self._matrix_and_range(frame), threads=self._threads)
        matrix = _frame_display_matrix(frame)
        transform = _display_transform(matrix) if matrix is not None else self._transform
        return np.ascontiguousarray(_apply_transform(rgb, transform))

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


def _interpolation():
    from av.video.reformatter import Interpolation

    # Plain bilinear: for same-size 8-bit Y'CbCr -> RGB swscale then takes its fast
    # unscaled path (about 5 ms for a 1080p frame; about 1 level from exact on average,
    # at most 3), which is also what decord gets, so the two backends give identical
    # pixels. ACCURATE_RND | FULL_CHR_H_INT is about 6x slower.
    return Interpolation.BILINEAR


def _grey_to_rgb(frame, depth: int, color_range: int) -> np.ndarray:
    """Grey (luma-only) frames: native code values -> full-range RGB, range honoured."""
    depth = min(max(depth, 8), 16)
    if depth == 8:
        native = frame.to_ndarray(format="gray")
    else:
        fmt = f"gray{depth}le" if sys.byteorder == "little" else f"gray{depth}be"
        native = frame.to_ndarray(format=fmt)
    v = native.astype(np.float32)
    if color_range == _AVCOL_RANGE_JPEG:
        y = v / float((1 << depth) - 1)
    else:
        y = (v / float(1 << (depth - 8)) - 16.0) / 219.0
    top = 255.0 if depth == 8 else 65535.0
    out = (np.clip(y, 0.0, 1.0) * top + 0.5).astype(np.uint8 if depth == 8 else np.uint16)
    return np.repeat(out[:, :, None], 3, axis=2)


def frame_to_rgb(frame, matrix: str, color_range: int, threads: int = 0) -> np.ndarray:
    """Convert a decoded ``av.VideoFrame`` to full-range RGB (uint8, or uint16 for >8 bits).

    ``matrix`` is a swscale matrix name ("ITU601", "ITU709", ...) and ``color_range`` an
    AVColorRange value (1 limited, 2 full), both describing the source.
    """
    fmt = frame.format
    bits = [c.bits for c in fmt.components if not c.is_alpha]
    depth = 8 if fmt.has_palette or not bits else max(bits)
    rng_name = "JPEG" if color_range == _AVCOL_RANGE_JPEG else "MPEG"
    little = sys.byteorder == "little"
    if not fmt.has_palette and len(bits) == 1:
        # swscale does not expand limited-range grey, so do it here.
        return _grey_to_rgb(frame, depth, color_range)
    if depth <= 8:
        return frame.to_ndarray(
            format="rgb24",
            src_colorspace=matrix,
            dst_colorspace=matrix,
            src_color_range=rng_name,
            dst_color_range="JPEG",
            interpolation=_interpolation(),
            threads=threads,
        )
    if fmt.is_rgb:
        return frame.to_ndarray(
            format="rgb48le" if little else "rgb48be", interpolation=_interpolation(), threads=threads
        )
    # Y'CbCr (or grey) with more than 8 bits: upsample chroma to 16-bit 4:4:4 with swscale
    # (values are shifted left, not rescaled), then apply the matrix in float32.
    yuv = frame.reformat(
        format="yuv444p16le" if little else "yuv444p16be",
        src_colorspace=matrix,
        dst_colorspace=matrix,
        src_color_range=rng_name,
        dst_color_range=rng_name,
        interpolation=_interpolation(),
        threads=threads,
    )
    h, w = yuv.height, yuv.width
    planes = []
    for plane in yuv.planes[:3]:
        arr = np.frombuffer(plane, dtype=np.uint16).reshape(plane.height, -1)[:h, :w]
        planes.append(arr.astype(np.float32))
    y, cb, cr = planes
    depth = min(depth, 16)
    shift = 16 - depth
    if color_range == _AVCOL_RANGE_JPEG:
        top = float(((1 << depth) - 1) << shift)
        y = y / top
        cb = (cb - 32768.0) / top
        cr = (cr - 32768.0) / top
    else:
        y = (y - 4096.0) / 56064.0  # (v - 16*256) / (219*256)
        cb = (cb - 32768.0) / 57344.0  # (v - 128*256) / (224*256)
        cr = (cr - 32768.0) / 57344.0
    kr, kb = _KR_KB.get(matrix, _KR_KB["ITU709"])
    kg = 1.0 - kr - kb
    r = y + (2.0 * (1.0 - kr)) * cr
    b = y + (2.0 * (1.0 - kb)) * cb
    g = (y - kr * r - kb * b) / kg
    out = np.empty((h, w, 3), dtype=np.uint16)
    for i, channel in enumerate((r, g, b)):
        np.clip(channel, 0.0, 1.0, out=channel)
        channel *= 65535.0
        channel += 0.5
        out[..., i] = channel.astype(np.uint16)
    return out


# --------------------------------------------------------------------------- stills


class ImageSource(FrameSource):
    """A still image read with Pillow: one frame at time 0, EXIF orientation applied.

    16-bit greyscale PNG/TIFF keep 16 bits through Pillow; 16-bit-per-channel colour
    PNG/TIFF (which Pillow would reduce to 8 bits) are decoded with FFmpeg instead.
    """

    decoder = "pillow"
    is_image = True
    duration = None
    fps = None

    def __init__(self, path: str | os.PathLike, max_pixels: int | None = None) -> None:
        from PIL import Image, UnidentifiedImageError

        self.path = str(path)
        self.decoded_frames = 0
        try:
            # A header claiming a gigantic picture is refused before decoding (Pillow's bomb guard, warning
            # included, as an error), not decoded into gigabytes.
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(self.path)
            with img:
                if max_pixels and img.width * img.height > max_pixels:
                    raise InputError(f"{self.path}: {img.width}x{img.height} frames exceed --max-pixels {max_pixels}")
                self.codec = (img.format or Path(self.path).suffix.lstrip(".")).lower()
                # Load first: Pillow's TIFF reader applies the orientation tag itself on
                # load and then drops it, so reading the tag afterwards avoids turning twice.
                img.load()
                try:
                    orientation = int(img.getexif().get(0x0112, 1) or 1)
                except Exception:  # noqa: BLE001 - broken EXIF is not fatal
                    orientation = 1
                self._transform = _exif_transform(orientation)
                if self._is_deep_colour(img):
                    rgb = self._decode_with_ffmpeg()
                else:
                    rgb = self._from_pillow(img)
        except ContriqueError:
            raise
        except UnidentifiedImageError:
            raise InputError(f"{self.path}: not an image Pillow can read") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise InputError(f"{self.path}: image too large to decode safely ({_one_line(exc)})") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise InputError(f"{self.path}: cannot decode image ({_one_line(exc)})") from None
        rgb = np.ascontiguousarray(_apply_transform(rgb, self._transform))
        self._rgb = rgb
        self.height, self.width = rgb.shape[:2]
        self.bit_depth = 16 if rgb.dtype == np.uint16 else 8

    def _is_deep_colour(self, img) -> bool:
        if img.mode not in ("RGB", "RGBA"):
            return False
        if img.format == "PNG":
            with open(self.path, "rb") as fh:
                head = fh.read(26)
            # IHDR: bit depth at byte 24, colour type at byte 25 (2 = RGB, 6 = RGBA).
            return len(head) == 26 and head[24] == 16 and head[25] in (2, 6)
        if img.format == "TIFF":
            bits = img.tag_v2.get(258) if hasattr(img, "tag_v2") else None
            if isinstance(bits, (tuple, list)):
                return any(int(b) > 8 for b in bits)
            return bits is not None and int(bits) > 8
        return False

    def _from_pillow(self, img) -> np.ndarray:
        mode = img.mode
        if mode.startswith("I;16") or mode == "I":
            grey = np.asarray(img)
            if mode == "I" and grey.size and (grey.min() < 0 or grey.max() > 65535):
                grey = np.clip(grey, 0, 65535)
            grey = grey.astype(np.uint16)
            return np.repeat(grey[:, :, None], 3, axis=2)
        if mode != "RGB":
            img = img.convert("RGB")
        return np.array(img, dtype=np.uint8)

    def _decode_with_ffmpeg(self) -> np.ndarray:
        import av

        try:
            with av.open(self.path, metadata_errors="replace") as container:
                for frame in container.decode(video=0):
                    fmt = "rgb48le" if sys.byteorder == "little" else "rgb48be"
                    return frame.to_ndarray(format=fmt)
        except av.FFmpegError as exc:
            raise InputError(f"{self.path}: cannot decode image ({_ffmpeg_reason(exc)})") from None
        raise InputError(f"{self.path}: the image holds no picture")

    def frames(self, sampling: Sampling | None = None) -> Iterator[Frame]:
        """The single frame of the image; the sampling's time rules do not apply to stills."""
        self.decoded_frames = 1
        yield Frame(index=0, pts_time=0.0, rgb=self._rgb.copy())


# --------------------------------------------------------------------------- decord


def _import_decord():
    try:
        import decord  # type: ignore[import-not-found]
    except ImportError:
        raise UnsupportedError(
            "the decord decoder is not installed; run: pip install 'contrique-video[decord]' "
            "(it installs decord2), or use --decoder pyav"
        ) from None
    return decord


class DecordSource(FrameSource):
    """Videos decoded by decord (decord2), which seeks to the sampled frames.

    Stream properties, frame times, indices and key-frame flags come from PyAV (the
    first frame and one demux pass without decoding), so sampling picks exactly the
    frames the PyAV backend picks. decord outputs 8-bit RGB, so >8-bit sources lose
    their extra precision here (a warning says so).
    """

    decoder = "decord"
    is_image = False

    def __init__(self, path: str | os.PathLike, threads: int = 0) -> None:
        decord = _import_decord()
        self.path = str(path)
        self.decoded_frames = 0
        probe = PyAVSource(self.path, threads=threads)
        try:
            self.width, self.height = probe.width, probe.height
            self.duration, self.fps = probe.duration, probe.fps
            self.bit_depth, self.codec = probe.bit_depth, probe.codec
            self.hdr = probe.hdr
            self.warnings.extend(probe.warnings)
            self._transform = probe._transform
            self._rotation = int(probe._peeked[0].rotation or 0)
            stored = (probe._peeked[0].height, probe._peeked[0].width)
            self._stored_shape = stored
            # decord (through FFmpeg's scale filter) reads untagged video as BT.601 at
            # any size; this library uses BT.709 for untagged HD, so re-matrix those.
            first = probe._peeked[0]
            untagged_hd = (
                probe._tagged_matrix(first) is None
                and probe._coded_height >= 720
                and not first.format.is_rgb
                and len([c for c in first.format.components if not c.is_alpha]) >= 3
            )
            self._recolour = _rematrix("ITU601", "ITU709") if untagged_hd else None
            self._times, self._keys = self._scan(probe)
        finally:
            probe.close()
        try:
            self._vr = decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=max(0, int(threads)))
        except Exception as exc:  # noqa: BLE001 - decord raises its own error types
            raise InputError(f"{self.path}: decord cannot read it ({_one_line(exc)})") from None
        n = len(self._vr)
        if n != len(self._times):
            log.warning(
                "%s: decord counts %d frames, the container %d; using decord's frame times",
                self.path,
                n,
                len(self._times),
            )
            ts = np.asarray(self._vr.get_frame_timestamp(list(range(n))), dtype=np.float64)[:, 0]
            self._times = [float(t - ts[0]) for t in ts] if n else []
            self._keys = set(int(k) for k in self._vr.get_key_indices())
        if self.bit_depth > 8:
            log.warning("%s: decord decodes to 8-bit RGB; use --decoder pyav to keep %d bits", self.path, self.bit_depth)

    @staticmethod
    def _scan(probe: PyAVSource) -> tuple[list[float], set[int]]:
        """Presentation times (from the first frame) and key-frame indices, from packets."""
        import av

        index, origin, tb = probe._stream.index, probe._origin, probe._time_base
        probe.close()
        container = probe._open_container()
        entries = []
        try:
            stream = container.streams[index]
            for packet in container.demux(stream):
                if not packet.size:
                    continue
                pts = packet.pts if packet.pts is not None else packet.dts
                if pts is not None:
                    entries.append((pts, bool(packet.is_keyframe)))
        except av.FFmpegError:
            pass
        finally:
            container.close()
        entries.sort()
        if origin is None:
            origin = entries[0][0] if entries else 0
        entries = [e for e in entries if e[0] >= origin]
        times = [float((pts - origin) * tb) for pts, _ in entries]
        keys = {i for i, (_, key) in enumerate(entries) if key}
        return times, keys

    def frames(self, sampling: Sampling | None = None) -> Iterator[Frame]:
        sampling = sampling if sampling is not None else Sampling()
        selector = sampling.selector(self.duration, self.fps)
        chosen: list[int] = []
        last = None  # the last frame in range that was not kept
        for i, t in enumerate(self._times):
            if selector.offer(i, t, i in self._keys):
                chosen.append(i)
            elif not selector.done and t >= selector.start - 1e-6:
                last = i
            if selector.done:
                break
        if not chosen and selector.fallback_last and last is not None:
            chosen.append(last)
        if not chosen:
            raise InputError(f"{self.path}: no frames in the selected range ({sampling.describe()})")
        self.decoded_frames = 0
        for start in range(0, len(chosen), 8):
            batch = chosen[start : start + 8]
            arrays = self._decode(batch)
            self.decoded_frames += len(batch)
            for i, arr in zip(batch, arrays):
                yield Frame(index=i, pts_time=self._times[i], rgb=self._orient(arr))

    def _decode(self, batch: list[int]) -> list[np.ndarray]:
        """Frames ``batch`` as (H, W, 3) arrays, whatever row padding decord leaves in them.

        On some CPUs (AVX-512 builds of FFmpeg's scaler) decord2 hands back a frame whose rows
        keep their padded stride, shaped as if it had 4 channels, and its batch call then fails
        outright; those frames are read one at a time and un-padded.
        """
        try:
            try:
                arrays = list(self._vr.get_batch(batch).asnumpy())
            except Exception:  # noqa: BLE001 - decord's batch copy refuses padded rows
                arrays = [self._vr[i].asnumpy() for i in batch]
        except Exception as exc:  # noqa: BLE001 - decord raises its own error types
            raise InputError(f"{self.path}: decord failed to decode it ({_one_line(exc)})") from None
        return [_unpad_rows(arr, self.path) for arr in arrays]

    def _orient(self, arr: np.ndarray) -> np.ndarray:
        """decord2 applies the display rotation but not flips; redo it from the matrix."""
        k = int(round(self._rotation / 90.0)) % 4
        if arr.shape[:2] == self._stored_shape and k % 2 == 1:
            stored = arr  # this decord did not rotate at all
        else:
            stored = np.rot90(arr, -k) if k else arr
        out = _apply_transform(stored, self._transform)
        if self._recolour is not None:
            fixed = out.astype(np.float32) @ self._recolour.T
            out = np.clip(fixed + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(out)

    def close(self) -> None:
        self._vr = None


def _unpad_rows(arr: np.ndarray, path: str) -> np.ndarray:
    """An (H, W, 3) view of a decord frame, dropping the row padding it may carry.

    decord shapes its buffer as (H, W, size / (H*W)); a buffer with padded rows then reads as
    4 (or more) channels. Its bytes are H rows of ``size / H`` bytes, RGB first.
    """
    if arr.ndim == 3 and arr.shape[2] == 3:
        return arr
    if arr.ndim != 3 or arr.dtype != np.uint8:
        raise InputError(f"{path}: decord returned frames of shape {arr.shape} ({arr.dtype}), not RGB")
    h, w = arr.shape[:2]
    flat = np.ascontiguousarray(arr).reshape(h, -1)
    if flat.shape[1] < 3 * w:
        raise InputError(f"{path}: decord returned frames of shape {arr.shape}, too small for {w}x{h} RGB")
    return flat[:, : 3 * w].reshape(h, w, 3)


def _rematrix(src: str, dst: str) -> np.ndarray:
    """3x3 matrix taking RGB decoded with matrix ``src`` to RGB decoded with ``dst``
    (same Y'CbCr code values, same range)."""

    def to_ycc(name):
        kr, kb = _KR_KB[name]
        kg = 1.0 - kr - kb
        return np.array(
            [
                [kr, kg, kb],
                [-kr / (2 * (1 - kb)), -kg / (2 * (1 - kb)), 0.5],
                [0.5, -kg / (2 * (1 - kr)), -kb / (2 * (1 - kr))],
            ]
        )

    return (np.linalg.inv(to_ycc(dst)) @ to_ycc(src)).astype(np.float32)


# --------------------------------------------------------------------------- entry point


def open_source(path: str | os.PathLike, decoder: str = "pyav", threads: int = 0, device: str = "cpu",
                max_pixels: int | None = None) -> FrameSource:
    """Open a video, a still image, or ``"-"`` (a stream on stdin) for decoding.

    ``decoder`` is "pyav" (default) or "decord" for videos; stills always use Pillow.
    ``threads`` is the decoder thread count (0: FFmpeg chooses). ``device`` "cuda" (or "cuda:N") decodes
    videos with NVDEC where FFmpeg can, else on the CPU with a warning (see :mod:`.gpu_decode`).
    ``max_pixels`` refuses a still larger than that from its header, before it is decoded.
    Raises :class:`InputError` / :class:`UnsupportedError` with a one-line message.
    """
    name = str(decoder).strip().lower() if decoder is not None else "pyav"
    if name not in DECODERS:
        raise InputError(f"unknown decoder {decoder!r}; available decoders: {', '.join(DECODERS)}")
    try:
        threads = int(threads)
    except (TypeError, ValueError):
        raise InputError(f"threads must be a whole number, got {threads!r}") from None
    if threads < 0:
        raise InputError(f"threads must be >= 0, got {threads}")
    from contrique_video.decode.gpu import parse_device

    kind, _ = parse_device(device)
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if text == STDIN:
        if name == "decord":
            raise UnsupportedError("decord cannot read from stdin; use --decoder pyav for piped input")
        return PyAVSource(STDIN, threads=threads, device=device)
    p = Path(text)
    _check_path(p)
    if p.suffix.lower() in IMAGE_EXTENSIONS:
        return ImageSource(p, max_pixels)
    if name == "decord":
        if kind == "cuda":
            log.warning("--device cuda: the decord decoder decodes on the CPU; use --decoder pyav for GPU decoding")
        return DecordSource(p, threads=threads)
    return PyAVSource(p, threads=threads, device=device)


__all__ = [
    "DECODERS",
    "IMAGE_EXTENSIONS",
    "DecordSource",
    "Frame",
    "FrameSource",
    "ImageSource",
    "PyAVSource",
    "frame_to_rgb",
    "open_source",
]
