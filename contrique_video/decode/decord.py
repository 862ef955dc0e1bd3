"""The decord (decord2) frame source, which decodes only the sampled frames through decord's seeking reader.

decord is used through its public API only. What it does not say -- colour tags, the display matrix,
exact frame times and key frames -- comes from PyAV's public API: a :class:`~.pyav.PyAVSource` probe for
the metadata, and one demux pass without decoding for the frame table (:func:`.seeking.scan`), so
sampling picks exactly the frames the PyAV backend picks. decord outputs 8-bit RGB, so >8-bit sources
lose their extra precision here (a warning says so).
"""

from __future__ import annotations

import logging
import os
from typing import Iterator

import numpy as np

from contrique_video.decode.base import FrameSource, one_line, shortfall
from contrique_video.decode.frames import Frame, apply_transform, rematrix
from contrique_video.decode.pyav import PyAVSource
from contrique_video.decode.sampler import Sampling
from contrique_video.decode.seeking import scan
from contrique_video.decode.registry import register_decoder
from contrique_video.errors import InputError
from contrique_video.extras import require

log = logging.getLogger("contrique_video")


def _import_decord():
    return require("decord", "--decoder decord (or use --decoder pyav)")


class DecordSource(FrameSource):
    """Videos decoded by decord (decord2), which seeks to the sampled frames."""

    decoder = "decord"
    is_image = False

    def __init__(self, path: str | os.PathLike, threads: int = 0) -> None:
        import av

        decord = _import_decord()
        self.path = str(path)
        self.decoded_frames = 0
        with PyAVSource(self.path, threads=threads, seek=False) as probe:
            self._adopt(probe.metadata)
            self.warnings.extend(probe.warnings)
        meta = self.metadata
        # decord (through FFmpeg's scale filter) reads untagged video as BT.601 at any size; this library
        # uses BT.709 for untagged HD, so re-matrix those.
        fmt = av.VideoFormat(meta.pixel_format)
        untagged_hd = (
            meta.matrix is None
            and meta.coded_height >= 720
            and not fmt.is_rgb
            and len([c for c in fmt.components if not c.is_alpha]) >= 3
        )
        self._recolour = rematrix("ITU601", "ITU709") if untagged_hd else None
        with av.open(self.path, metadata_errors="replace") as container:
            stream = container.streams[meta.stream_index]
            loose = len(container.streams) > 1 and not (stream.duration and stream.time_base)
            timeline = scan(container, stream, meta.start_pts)
        if timeline:  # the scan read every packet: what a truncated or damaged file lost is known now
            self._warn_damage(["reading stopped at a damaged spot" if not timeline.read_to_end else None,
                               shortfall(timeline.time(len(timeline.pts) - 1), self.duration, self.fps, loose)])
        self._times = [timeline.time(i) for i in range(len(timeline.pts))] if timeline else []
        self._keys = set(timeline.keys) if timeline else set()
        # decord's FFmpeg would print its own log lines ("File ended prematurely"); its failures come back as
        # exceptions, made one line below, and damage is the warning above.
        decord.logging.set_level(decord.logging.QUIET)
        try:
            self._vr = decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=max(0, int(threads)))
        except Exception as exc:  # noqa: BLE001 - decord raises its own error types
            raise InputError(f"{self.path}: decord cannot read it ({one_line(exc)})") from None
        n = len(self._vr)
        if n != len(self._times):
            log.warning("%s: decord counts %d frames, the container %d; using decord's frame times",
                        self.path, n, len(self._times))
            ts = np.asarray(self._vr.get_frame_timestamp(list(range(n))), dtype=np.float64)[:, 0]
            self._times = [float(t - ts[0]) for t in ts] if n else []
            self._keys = set(int(k) for k in self._vr.get_key_indices())
        if self.bit_depth > 8:
            log.warning("%s: decord decodes to 8-bit RGB; use --decoder pyav to keep %d bits", self.path, self.bit_depth)

    def frames(self, sampling: Sampling | None = None) -> Iterator[Frame]:
        sampling = sampling if sampling is not None else Sampling()
        selector = self.selector = sampling.selector(self.duration, self.fps)
        entries = ((i, t, i in self._keys, None) for i, t in enumerate(self._times))
        chosen = [index for index, _, _ in selector.pick(entries)]
        self.decoded_frames = 0
        self.seeked = True
        if not chosen:
            raise self._nothing_selected(sampling)
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
            raise InputError(f"{self.path}: decord failed to decode it ({one_line(exc)})") from None
        return [_unpad_rows(arr, self.path) for arr in arrays]

    def _orient(self, arr: np.ndarray) -> np.ndarray:
        """decord2 applies the display rotation but not flips; redo it from the matrix."""
        meta = self.metadata
        k = int(round(meta.rotation / 90.0)) % 4
        if arr.shape[:2] == (meta.coded_height, meta.coded_width) and k % 2 == 1:
            stored = arr  # this decord did not rotate at all
        else:
            stored = np.rot90(arr, -k) if k else arr
        out = apply_transform(stored, meta.transform)
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


@register_decoder("decord", requires="decord", description="decord (pip install 'contrique-video[decord]'); decodes to 8-bit")
def open_decord(path, threads: int, device: str, seek: bool) -> DecordSource:
    return DecordSource(path, threads=threads)
