"""What a video is, read once when it is opened: :class:`VideoMetadata` (``source.metadata``).

Everything comes from PyAV's public API: the stream, its codec context, and the first decoded frame
(a frame's tags win over the stream's, and the display matrix travels as frame side data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from contrique_video.decode.frames import AVCOL_SPC_TO_SWS, display_transform, frame_display_matrix

# AVColorTransferCharacteristic values of HDR transfer functions -> the record's "hdr" value.
AVCOL_TRC_HDR = {16: "pq", 18: "hlg"}  # SMPTE ST 2084, ARIB STD-B67


@dataclass(frozen=True)
class VideoMetadata:
    """A video's (or still's) properties. Colour fields are FFmpeg's enum values; 0 means untagged."""

    codec: str
    width: int  # as displayed (after rotation)
    height: int
    coded_width: int  # as stored in the stream
    coded_height: int
    duration: float | None  # seconds; None when unknown (a pipe)
    fps: float | None  # the stream's average frame rate; None when unknown
    frame_count: int | None  # what the container declares; None when it does not say
    bit_depth: int
    pixel_format: str
    matrix: str | None  # the tagged Y'CbCr matrix as a swscale name ("ITU709", ...); None: untagged
    color_range: int  # AVColorRange: 1 limited ("tv"), 2 full ("pc")
    color_trc: int  # AVColorTransferCharacteristic
    color_primaries: int  # AVColorPrimaries
    rotation: int  # degrees counter-clockwise the display matrix turns the picture
    transform: tuple[bool, bool, bool]  # (transpose, flip_rows, flip_cols) that give the displayed picture
    time_base: Fraction
    start_pts: int | None  # PTS of the first decoded frame: frame times count from it
    container: str  # the demuxer's name ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", ...)
    stream_index: int  # the container stream that is decoded

    @property
    def hdr(self) -> str | None:
        """"pq" or "hlg" for an HDR transfer function, else None."""
        return AVCOL_TRC_HDR.get(self.color_trc)


def frame_rate(stream) -> float | None:
    for rate in (stream.average_rate, getattr(stream, "guessed_rate", None)):
        if rate:
            value = float(rate)
            if value > 0 and math.isfinite(value):
                return value
    return None


def stream_duration(container, stream) -> float | None:
    if stream.duration and stream.time_base:
        value = float(stream.duration * stream.time_base)
        if value > 0:
            return value
    if container.duration and container.duration > 0:
        return container.duration / 1_000_000
    return None


def tagged_matrix(frame, stream) -> str | None:
    """The swscale matrix name the frame (else the stream) is tagged with, or None."""
    matrix = AVCOL_SPC_TO_SWS.get(int(frame.colorspace or 0))
    if matrix is None:
        matrix = AVCOL_SPC_TO_SWS.get(int(stream.codec_context.colorspace or 0))
    return matrix


def probe(container, stream, first) -> VideoMetadata:
    """The metadata of ``stream`` in ``container``, whose first decoded frame is ``first``."""
    cc = stream.codec_context
    transform = display_transform(frame_display_matrix(first))
    w, h = first.width, first.height
    fmt = first.format
    bits = [c.bits for c in fmt.components if not c.is_alpha]
    return VideoMetadata(
        codec=cc.name or "unknown",
        width=h if transform[0] else w,
        height=w if transform[0] else h,
        coded_width=w,
        coded_height=h,
        duration=stream_duration(container, stream),
        fps=frame_rate(stream),
        frame_count=int(stream.frames) if stream.frames else None,
        bit_depth=8 if fmt.has_palette or not bits else max(bits),
        pixel_format=fmt.name,
        matrix=tagged_matrix(first, stream),
        color_range=int(first.color_range or 0) or int(cc.color_range or 0),
        color_trc=int(getattr(first, "color_trc", 0) or 0) or int(cc.color_trc or 0),
        color_primaries=int(getattr(first, "color_primaries", 0) or 0) or int(cc.color_primaries or 0),
        rotation=int(first.rotation or 0),
        transform=transform,
        time_base=stream.time_base or Fraction(1, 90000),
        start_pts=first.pts if first.pts is not None else first.dts,
        container=container.format.name,
        stream_index=stream.index,
    )
