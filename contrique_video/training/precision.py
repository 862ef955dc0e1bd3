"""Accuracy of reduced-precision paths against eager fp32 on a MOS set: the model card's "precisions" entries.

``auto`` reads a card's entry for the path it would time (:mod:`contrique_video.backends.autotune`), and takes a
reduced precision only where the measured SRCC and score changes are within its bounds. The entries are measured
here: a fixed subset of the MOS set (every ``step``-th row of mos.csv, in file order, or the first ``limit`` rows)
scored with the model's default head on eager PyTorch fp32 and on each path, one image at a time round-robin over
the paths (:func:`contrique_video.timing.round_robin`), so machine load drifts alike for all of them and the log's
seconds per image compare.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contrique_video.errors import InputError
from contrique_video.files import atomic_write
from contrique_video.timing import Timing, round_robin

log = logging.getLogger("contrique_video")

REFERENCE = ("torch", "fp32")


@dataclass
class PrecisionCheck:
    """Card entries keyed ``"BACKEND PRECISION"`` and the raw scores ([paths incl. the fp32 reference, images])."""

    entries: dict[str, dict]
    scores: np.ndarray


def precision_check(mos_folder: str | Path, paths: list[tuple[str, str]], weights: str | Path | None = None,
                    step: int = 1, limit: int | None = None, threads: int | None = None,
                    command: str = "") -> PrecisionCheck:
    """Score the subset on eager fp32 and on each (backend, precision) and describe each path's change."""
    from scipy.stats import spearmanr

    from contrique_video.api import Scorer, builtin_weights
    from contrique_video.backends.cpu import cpu_summary
    from contrique_video.training.fit import match_files, read_mos

    if any("auto" in p for p in paths):
        raise InputError("precision check: name BACKEND:PRECISION pairs, not auto (a card entry is for one path)")
    folder = Path(mos_folder)
    full = read_mos(folder / "mos.csv")
    table = full.iloc[::step].iloc[:limit]
    files = match_files(table, folder / "images")
    mos = table["mos"].to_numpy()
    weights = weights or builtin_weights()
    every = [REFERENCE, *[p for p in paths if tuple(p) != REFERENCE]]
    scorers = [Scorer(weights=weights, backend=b, precision=p, threads=threads) for b, p in every]
    scores = np.zeros((len(every), len(files)))
    timings: dict[int, Timing] = {}
    for i, f in enumerate(files):
        for k, t in round_robin({k: functools.partial(s.score, f) for k, s in enumerate(scorers)},
                                  repeats=1, warmup=0).items():
            scores[k, i] = t.result.score
            timings[k] = timings[k] + t if k in timings else t
        if i % 25 == 0:
            log.info("%d/%d images, %.0f s", i + 1, len(files), sum(sum(t.wall) for t in timings.values()))
    log.info("median seconds per image: %s", ", ".join(f"{b} {p} {timings[k].median:.3f} "
                                                       f"({timings[0].median / timings[k].median:.2f}x)"
                                                       for k, (b, p) in enumerate(every)))
    ref = scores[0]
    srcc_ref = float(spearmanr(ref, mos)[0])
    subset = f"{folder.name}, every {step}. row of mos.csv ({len(files)} of {len(full)} images)"
    entries = {}
    for (b, p), s, new in zip(every[1:], scorers[1:], scores[1:]):
        srcc = float(spearmanr(new, mos)[0])
        entries[f"{b} {p}"] = {
            "backend": s.backend.describe(),
            "against": "torch eager fp32, the model's default head",
            "head": scorers[0].check_head().name,  # an entry measured with another head says nothing of this one
            "images": subset,
            "srcc_fp32": round(srcc_ref, 5),
            "srcc": round(srcc, 5),
            "srcc_change": round(srcc - srcc_ref, 5),
            "mean_abs_score_change": round(float(np.abs(new - ref).mean()), 4),
            "max_abs_score_change": round(float(np.abs(new - ref).max()), 4),
            "measured": f"{datetime.date.today().isoformat()}, {command}".rstrip(", "),
            "cpu": cpu_summary(),
        }
    return PrecisionCheck(entries, scores)


def write_card_precisions(card: str | Path, entries: dict[str, dict]) -> None:
    """Store ``entries`` under "precisions" in a model card (JSON), keeping its other entries."""
    card = Path(card)
    if card.suffix != ".json":
        raise InputError(f"{card}: writing precisions needs a model card (.json), not a checkpoint")
    raw = json.loads(card.read_text())
    raw.setdefault("precisions", {}).update(entries)
    atomic_write(card, json.dumps(raw, indent=2) + "\n")
