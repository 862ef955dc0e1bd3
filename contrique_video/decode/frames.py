"""Decoded frames and their colour: :class:`Frame`, Y'CbCr -> RGB conversion, and display transforms.

Colour handling (PyAV frames):

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
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

# AVColorSpace values (libavutil/pixfmt.h) -> swscale matrix names understood by PyAV.
AVCOL_SPC_TO_SWS = {
    1: "ITU709",  # BT709
    4: "FCC",
    5: "ITU601",  # BT470BG
    6: "ITU601",  # SMPTE170M
    7: "SMPTE240M",
    9: "BT2020",  # BT2020_NCL
    10: "BT2020",  # BT2020_CL (approximated by the non-constant-luminance matrix)
}
# (Kr, Kb) of each matrix, for the >8-bit path that applies the matrix itself.
KR_KB = {
    "ITU709": (0.2126, 0.0722),
    "ITU601": (0.299, 0.114),
    "SMPTE240M": (0.212, 0.087),
    "FCC": (0.30, 0.11),
    "BT2020": (0.2627, 0.0593),
}
# AVColorRange values: limited ("tv", MPEG) and full ("pc", JPEG).
RANGE_MPEG = 1
RANGE_JPEG = 2


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded frame, as displayed.

    On a stream of unknown length a frame may be held before it is known whether it will be scored; it then
    comes with ``rgb`` None and ``pending``, which converts the decoder's own (YUV) picture when called, so
    that only the frames chosen are converted and encoded (see ``StreamSelector``).
    """

    index: int  # 0-based position in presentation order in the whole stream
    pts_time: float  # seconds from the first frame, from PTS * time_base; 0.0 for stills
    rgb: np.ndarray | None  # HxWx3 RGB, C-contiguous; uint8 (8-bit sources) or uint16 (0..65535)
    pending: Callable[[], np.ndarray] | None = field(default=None, repr=False)

    def loaded(self) -> Frame:
        """This frame with its pixels converted (itself when they already are)."""
        return self if self.rgb is not None else Frame(self.index, self.pts_time, self.pending())


def display_transform(matrix: np.ndarray | None) -> tuple[bool, bool, bool]:
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


def apply_transform(arr: np.ndarray, transform: tuple[bool, bool, bool]) -> np.ndarray:
    transpose, flip_rows, flip_cols = transform
    if transpose:
        arr = arr.transpose(1, 0, 2)
    if flip_rows:
        arr = arr[::-1]
    if flip_cols:
        arr = arr[:, ::-1]
    return arr


def frame_display_matrix(frame) -> np.ndarray | None:
    """The frame's DISPLAYMATRIX side data as nine int32s, or None. Looked up by name: iterating PyAV's side data
    yields entries up to 18.1.0 and their types from 18.1.1 on, and a silent miss leaves phone videos sideways."""
    item = frame.side_data.get("DISPLAYMATRIX")
    raw = bytes(item) if item is not None else b""
    if len(raw) < 36:
        return None
    return np.frombuffer(raw[:36], dtype="<i4" if sys.byteorder == "little" else ">i4")


def exif_transform(orientation: int) -> tuple[bool, bool, bool]:
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
    if color_range == RANGE_JPEG:
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
    rng_name = "JPEG" if color_range == RANGE_JPEG else "MPEG"
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
    if color_range == RANGE_JPEG:
        top = float(((1 << depth) - 1) << shift)
        y = y / top
        cb = (cb - 32768.0) / top
        cr = (cr - 32768.0) / top
    else:
        y = (y - 4096.0) / 56064.0  # (v - 16*256) / (219*256)
        cb = (cb - 32768.0) / 57344.0  # (v - 128*256) / (224*256)
        cr = (cr - 32768.0) / 57344.0
    kr, kb = KR_KB.get(matrix, KR_KB["ITU709"])
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


def rematrix(src: str, dst: str) -> np.ndarray:
    """3x3 matrix taking RGB decoded with matrix ``src`` to RGB decoded with ``dst``
    (same Y'CbCr code values, same range)."""

    def to_ycc(name):
        kr, kb = KR_KB[name]
        kg = 1.0 - kr - kb
        return np.array(
            [
                [kr, kg, kb],
                [-kr / (2 * (1 - kb)), -kg / (2 * (1 - kb)), 0.5],
                [0.5, -kg / (2 * (1 - kr)), -kb / (2 * (1 - kr))],
            ]
        )

    return (np.linalg.inv(to_ycc(dst)) @ to_ycc(src)).astype(np.float32)
