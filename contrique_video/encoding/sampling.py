"""Where CRF search and ladders sample: the spans of an input cut into a CRF search's reel, and the frames
scored in each encode. Both are deterministic, so a probe and the final encode are measured alike."""

from __future__ import annotations

import logging
import math

from contrique_video.decode.sampler import Sampling
from contrique_video.errors import InputError

log = logging.getLogger("contrique_video")


def sample_spans(duration: float | None, samples: int, sample_duration: float, name: str = "input") -> list[tuple[float, float]]:
    """``samples`` spans of ``sample_duration`` seconds centred on equal parts of the input (deterministic).

    An input shorter than the samples together is used whole, as ab-av1 does: it is then the best sample there is,
    and refusing it would make the defaults fail on every short clip.
    """
    if duration is None or not math.isfinite(duration) or duration <= 0:
        raise InputError(f"{name}: its duration is unknown, so samples cannot be placed; remux it to a file first")
    if samples < 1 or not sample_duration > 0:
        raise InputError(f"need at least 1 sample of more than 0 s, got {samples} x {sample_duration:g} s")
    if samples * sample_duration > duration + 1e-6:
        log.info("%s is %.2f s long, no longer than the %d samples x %g s requested: using the whole input",
                 name, duration, samples, sample_duration)
        return [(0.0, duration)]
    spans = []
    for k in range(samples):
        centre = (k + 0.5) * duration / samples
        start = min(max(0.0, centre - sample_duration / 2), duration - sample_duration)
        spans.append((round(start, 6), sample_duration))
    return spans


def centred(frames: int, seconds: float) -> Sampling:
    """``frames`` frames at the centres of equal parts of an encode ``seconds`` long (its length from its packets).

    Centred, so a sample's first frame, a key frame that an encoder gives more bits than the rest, is not
    favoured (it is scored only when more than half the frames are asked for): scoring it in a few-frame
    sample of every encode would make each one look better than its average frame, and a short CRF-search
    sample (a key frame per sample) more than a full encode. ``--frames N`` centres its targets the same way.
    """
    return Sampling("frames", frames, duration=seconds)
