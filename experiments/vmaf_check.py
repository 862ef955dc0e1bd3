#!/usr/bin/env python3
"""How well does our no-reference score rank ladder renditions the way VMAF (full reference) does?
Answered: how well our score ranks ladder renditions the way libvmaf does (SRCC within and across contents).

For each content (experiments/make_clips.py), a ladder of heights x CRFs is built with ``build_ladder``; every
rendition is scored by us upscaled (bicubic) to the display size, and the very same display-size file is
measured with libvmaf (vmaf_v0.6.1) against the source, using the static FFmpeg of imageio-ffmpeg
(``pip install 'contrique-video[vmaf]'``). Reported: Spearman rank correlation (SRCC) with VMAF within each
content and across all renditions of all contents, for our score and for two trivial baselines, the
encode's bitrate and the lossless (x264 QP 0) file size of the display-size rendition. The pooled
features of every rendition go to ``features.npz`` next to ``results.csv``, for fitting a VMAF-calibrated
head (experiments/fit_vmaf_head.py).

    python experiments/vmaf_check.py --out runs/vmaf --size 1280x720 --heights 720,480,360 --crf 24,32,40
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from make_clips import CONTENTS, write_clip
from scipy.stats import spearmanr

from contrique_video.api import Scorer
from contrique_video.encoding.encode import EncodeSettings, upscale
from contrique_video.encoding.ladder import Grid, Hooks, build_ladder, parse_crfs
from contrique_video.encoding.reference import (
    vmaf_mean as vmaf,  # libvmaf through imageio-ffmpeg's static build
)


class Recording:
    """A scorer that remembers the pooled feature of the last file it scored."""

    def __init__(self, scorer: Scorer):
        self.scorer, self.feature = scorer, None

    def check_head(self):
        return self.scorer.check_head()

    def score(self, path, sampling):
        result = self.scorer.score(path, sampling=sampling)
        self.feature = result.feature
        return result


def srcc(frame: pd.DataFrame, column: str) -> float:
    return float(spearmanr(frame[column], frame["vmaf"]).statistic)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/vmaf"))
    p.add_argument("--size", default="1280x720", help="Source and display size.")
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--contents", default="astronaut,coffee,chelsea,hubble,grass")
    p.add_argument("--heights", default="720,480,360")
    p.add_argument("--crf", default="24,32,40")
    p.add_argument("--encoder", default="libx264")
    p.add_argument("--frames", type=int, default=4, help="Frames we score per rendition.")
    p.add_argument("--backend", default="torch")
    p.add_argument("--weights", default=None, help="A model card (default: the built-in model).")
    p.add_argument("--head", default=None, help="The head (default: the card's default head; other cards need one).")
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    scorer = Recording(Scorer(weights=args.weights, head=args.head, backend=args.backend))
    args.out.mkdir(parents=True, exist_ok=True)
    rows, features, t0 = [], [], time.time()
    for content in args.contents.split(","):
        assert content in CONTENTS, content
        src = write_clip(content, args.out / "sources" / f"{content}.mp4", width, height, args.seconds)
        measured: dict[tuple[int, int], dict] = {}

        def inspect(h: int, crf: int, shown: Path, src=src, measured=measured) -> None:
            with tempfile.TemporaryDirectory() as tmp:
                lossless = upscale(shown, Path(tmp) / "lossless.mkv", (width, height))
                measured[(h, crf)] = {"vmaf": vmaf(shown, src), "lossless_bytes": lossless.bytes,
                                      "feature": scorer.feature}

        ladder = build_ladder(src, scorer, args.encoder, Grid([int(h) for h in args.heights.split(",")], parse_crfs(args.crf),
                                                       frames=args.frames),
                              settings=EncodeSettings(preset="medium"), hooks=Hooks(inspect=inspect))
        for r in ladder.renditions:
            extra = dict(measured[(r.height, r.crf)])
            features.append(extra.pop("feature"))
            row = {"content": content, "height": r.height, "crf": r.crf, "kbps": r.kbps, "score": r.score, **extra}
            rows.append(row)
            print(json.dumps(row), flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "results.csv", index=False, float_format="%.4f")
    np.savez(args.out / "features.npz", features=np.stack(features), vmaf=table["vmaf"].to_numpy(),
             content=table["content"].to_numpy(str), height=table["height"].to_numpy(), crf=table["crf"].to_numpy())
    summary = {"renditions": len(table), "contents": table["content"].nunique(), "seconds": round(time.time() - t0)}
    for column in ("score", "lossless_bytes", "kbps"):
        within = table.groupby("content").apply(lambda g, c=column: srcc(g, c), include_groups=False)
        summary[column] = {"srcc_across": srcc(table, column), "srcc_within_mean": float(within.mean()),
                           "srcc_within_min": float(within.min()),
                           "srcc_within": {k: round(v, 3) for k, v in within.items()}}
    summary["score_range_by_content"] = {k: [round(g["score"].min(), 1), round(g["score"].max(), 1)]
                                         for k, g in table.groupby("content")}
    summary["vmaf_range_by_content"] = {k: [round(g["vmaf"].min(), 1), round(g["vmaf"].max(), 1)]
                                        for k, g in table.groupby("content")}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1, default=lambda v: v.item() if isinstance(v, np.generic) else str(v)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
