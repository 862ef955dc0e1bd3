"""Build and featurise grain ladders (contrique_video.training.grain) with the shipped model, resumably.

    python experiments/grain_ladders.py --wallpapers /tmp/wp/x --cache runs/grain_fit.npz \\
        --sources Dragonfly_by_Bolly,Aqua,gen:text/0 --tiers 1,2,3

Each clip's mean feature (as ``contrique-video score`` pools them) is stored under its key in ``--cache``;
a rerun makes only the clips that are missing. Sources are processed tier by tier, so a run cut short
still covers every source's core ladders.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contrique_video.training import grain  # noqa: E402
from contrique_video.training.ranking import FeatureCache, feature_id, model_features  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", required=True, help="comma-separated source names (see grain.source_image)")
    ap.add_argument("--tiers", default="1,2,3")
    ap.add_argument("--wallpapers", type=Path, default=None)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--weights", default=None, help="a model card (default: the built-in model)")
    ap.add_argument("--frames", type=int, default=grain.FRAMES, help="frames per clip (fewer: cheaper fit clips)")
    ap.add_argument("--precision", default="fp32", help="the model's precision (heads are fit on fp32 features)")
    args = ap.parse_args()
    extract, scorer = model_features(args.weights, threads=args.threads, precision=args.precision)
    tag = "" if args.frames == grain.FRAMES else f"/{args.frames}f"
    cache = FeatureCache(args.cache, feature_id(scorer) + "/clip-mean" + tag, every=5)
    t0 = time.time()
    count = [0]

    def progress(clip):
        count[0] += 1
        print(f"{time.time() - t0:7.0f}s {count[0]:4d} {clip.key}", flush=True)

    sources = args.sources.split(",")
    for tier in (int(t) for t in args.tiers.split(",")):
        for source in sources:
            grain.build(grain.plan(source, tier), cache, scorer.mean_feature,
                        lambda s: grain.pan(grain.source_image(s, args.wallpapers, args.frames), args.frames), progress)


if __name__ == "__main__":
    main()
