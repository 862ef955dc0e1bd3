"""Featurise the noise ladders of extra still sources with the shipped model, resumably (issue 30).

    python experiments/noise_ladders.py --wallpapers /tmp/wp/x --cache runs/noise_fit.npz \\
        --sources 'Aqua#smooth,Aqua#gray,gen:product/1'

Noise is the damage a head most easily reads as detail where a photo has little of its own: flat crops
(``NAME#smooth``), photos in grey levels (``NAME#gray``, where colour noise adds colour) and generated
product shots (small objects on white). Only the noise types (``degradation.NOISE_TYPES``) are made: blurring a
flat crop changes nothing, so its other ladders would ask for drops that cannot happen. Rows are keyed
``source|kind|level`` like fit_ranked_head.py's cache; experiments/fit_grain_head.py ``--noise-stills`` reads them.
Sources must be FIT sources (never the held-out ones of the degradation check). ``--types`` makes other still
ladders instead (e.g. blur, rescale, JPEG of generated sharp-detail sources, for fit_grain_head.py ``--extra-stills``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contrique_video.training import degradation as deg  # noqa: E402
from contrique_video.training.ranking import FeatureCache, feature_id, model_features  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", required=True, help="comma-separated source names (see degradation.load_pristine)")
    ap.add_argument("--wallpapers", type=Path, default=None)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--weights", default=None, help="a model card (default: the built-in model)")
    ap.add_argument("--types", default=",".join(deg.NOISE_TYPES), help="comma-separated ladder types (default: the noise types)")
    args = ap.parse_args()
    sources = args.sources.split(",")
    held = [s for s in sources if s.split("#")[0] in deg.HELDOUT + deg.HELDOUT_SHARP]
    if held:
        ap.error(f"held-out sources cannot be fit on: {', '.join(held)}")
    extract, scorer = model_features(args.weights, threads=args.threads)
    cache = FeatureCache(args.cache, feature_id(scorer), every=20)
    kinds = args.types.split(",")
    for source in sources:
        t0 = time.time()
        made: dict = {}  # the source's ladders, made only if some row is missing from the cache

        def level_image(kind, level, source=source, made=made):
            if not made:
                made.update({lad.kind: lad for lad in deg.ladders(deg.load_pristine(source, args.wallpapers), source, kinds)})
            return made[kind].make(level)

        for lad in deg.ladders(np.zeros((64, 64, 3), np.uint8), source, kinds):
            for level in range(lad.n):
                cache.get(f"{source}|{lad.kind}|{level}", lambda k=lad.kind, lv=level: level_image(k, lv), extract)
        cache.save()
        print(f"{source}: done in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
