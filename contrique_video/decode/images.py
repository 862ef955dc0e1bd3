"""Still images (Pillow): one frame at time 0, EXIF orientation applied."""

from __future__ import annotations

import os
import sys
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from contrique_video.decode.base import FrameSource, ffmpeg_reason, one_line
from contrique_video.decode.frames import RANGE_JPEG, Frame, apply_transform, exif_transform
from contrique_video.decode.metadata import VideoMetadata
from contrique_video.decode.sampler import Sampling
from contrique_video.errors import ContriqueError, InputError


class ImageSource(FrameSource):
    """A still image read with Pillow: one frame at time 0, EXIF orientation applied.

    16-bit greyscale PNG/TIFF keep 16 bits through Pillow; 16-bit-per-channel colour
    PNG/TIFF (which Pillow would reduce to 8 bits) are decoded with FFmpeg instead.
    """

    decoder = "pillow"
    is_image = True

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
                codec = (img.format or Path(self.path).suffix.lstrip(".")).lower()
                # Load first: Pillow's TIFF reader applies the orientation tag itself on
                # load and then drops it, so reading the tag afterwards avoids turning twice.
                img.load()
                try:
                    orientation = int(img.getexif().get(0x0112, 1) or 1)
                except Exception:  # noqa: BLE001 - broken EXIF is not fatal
                    orientation = 1
                self._transform = exif_transform(orientation)
                if self._is_deep_colour(img):
                    rgb = self._decode_with_ffmpeg()
                else:
                    rgb = self._from_pillow(img)
        except ContriqueError:
            raise
        except UnidentifiedImageError:
            raise InputError(f"{self.path}: not an image Pillow can read") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise InputError(f"{self.path}: image too large to decode safely ({one_line(exc)})") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise InputError(f"{self.path}: cannot decode image ({one_line(exc)})") from None
        rgb = np.ascontiguousarray(apply_transform(rgb, self._transform))
        self._rgb = rgb
        h, w = rgb.shape[:2]
        deep = rgb.dtype == np.uint16
        self._adopt(VideoMetadata(
            codec=codec, width=w, height=h, coded_width=h if self._transform[0] else w,
            coded_height=w if self._transform[0] else h, duration=None, fps=None, frame_count=1,
            bit_depth=16 if deep else 8, pixel_format="rgb48" if deep else "rgb24", matrix=None,
            color_range=RANGE_JPEG, color_trc=0, color_primaries=0, rotation=0, transform=self._transform,
            time_base=Fraction(1), start_pts=0, container=codec, stream_index=0))

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
            raise InputError(f"{self.path}: cannot decode image ({ffmpeg_reason(exc)})") from None
        raise InputError(f"{self.path}: the image holds no picture")

    def frames(self, sampling: Sampling | None = None) -> Iterator[Frame]:
        """The single frame of the image; the sampling's time rules do not apply to stills."""
        self.decoded_frames = 1
        yield Frame(index=0, pts_time=0.0, rgb=self._rgb.copy())
