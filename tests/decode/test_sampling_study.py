"""scripts/sampling_study.py evaluates samplings offline from cached (frame, pts_time); that is only valid if it
selects exactly the frames the real source path selects. Checked on tiny CFR and VFR clips (no model needed)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from media import make_clip

from contrique_video.decode.sampler import Sampling
from contrique_video.decode import open_source

_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "sampling_study.py"
_spec = importlib.util.spec_from_file_location("sampling_study", _SCRIPT)
study = importlib.util.module_from_spec(_spec)
sys.modules["sampling_study"] = study  # dataclasses look their module up there
_spec.loader.exec_module(study)

SAMPLINGS = [Sampling(), Sampling("frames", 7), Sampling("frames", 200), Sampling("frames", 1, start=2.7),
             Sampling("fps", 1), Sampling("fps", 3)]


@pytest.mark.parametrize("vfr", [False, True])
def test_offline_selection_matches_the_source(tmp_path, vfr):
    path = make_clip(tmp_path / "c.mkv", frames=75, fps=25, vfr=vfr)
    with open_source(path) as src:
        duration, fps = src.duration, src.fps
        every = list(src.frames(Sampling("all")))
    frame = np.array([f.index for f in every], np.int64)
    pts_time = np.array([f.pts_time for f in every])
    # A fake per-frame score (the frame index) makes the sampled mean checkable without a model.
    cached = {"frame": frame, "pts_time": pts_time, "score": frame.astype(float),
              "duration": np.float64(duration), "fps": np.float64(fps)}
    for sampling in SAMPLINGS:
        with open_source(path) as src:
            real = [f.index for f in src.frames(sampling)]
        offline = frame[study.select(sampling, frame, pts_time, duration, fps)].tolist()
        assert offline == real, sampling
        score, count = study.sampled_score(sampling, cached)
        assert count == len(real) and score == pytest.approx(np.mean(real))
