"""The checks of a built-in model candidate that the degradation check does not print (issue 30): the CI guard's
metrics (tests/training/test_grain.py's clips: x264 CRF 16-48 of a grainy 960x540 pan of scikit-learn's china
photo) at each precision, and libvmaf agreement of the head on vmaf_check.py's features.npz.

    PYTHONPATH=. python experiments/candidate_checks.py --weights CARD --head HEAD --vmaf OUT/vmaf/features.npz
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.stats import spearmanr

from contrique_video.api import Scorer
from contrique_video.models.head import resolve_head
from contrique_video.training import degradation as deg
from contrique_video.training import grain
from contrique_video.training.ranking import FeatureCache


def guard(weights: str | None, head: str | None, precision: str) -> dict:
    """grain.metrics of the CI guard's clips, scored as the guard scores them."""
    scorer = Scorer(weights=weights, head=head, backend="openvino", precision=precision, threads=1)
    photo = Image.fromarray(deg.package_image(deg.SKLEARN_CHINA.split(":", 1)[1]))
    w, h, n = 960, 540, 2
    still = np.asarray(photo.resize((w + 4 * n, round(photo.height * (w + 4 * n) / photo.width)), Image.Resampling.LANCZOS))
    clips = grain.ladder("china", "t:12") + grain.ladder("china", "clean", crfs=(16,)) + grain.ladder("china", "t:8", crfs=())
    cache = FeatureCache(Path(tempfile.mkdtemp()) / "f.npz", "guard", every=100)
    grain.build(clips, cache, scorer.mean_feature, lambda source: np.stack([still[:h, 4 * i : 4 * i + w] for i in range(n)]))
    scores = {c.key: float(scorer.check_head().predict(cache.rows[c.key][None])[0]) for c in clips}
    return grain.metrics(scores)


def vmaf_agreement(head: str, features: Path) -> tuple[float, float, float]:
    """SRCC with libvmaf within each content (mean, min) and across all renditions."""
    z = np.load(features)
    s, v, c = resolve_head(head).predict(z["features"]), z["vmaf"], z["content"]
    within = [spearmanr(s[c == k], v[c == k])[0] for k in sorted(set(c.tolist()))]
    return float(np.mean(within)), float(np.min(within)), float(spearmanr(s, v)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", help="model card (default: the built-in model)")
    ap.add_argument("--head", help="head name or JSON (default: the card's)")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--vmaf", type=Path, help="vmaf_check.py's features.npz of this model")
    args = ap.parse_args()
    if args.vmaf and not args.head:
        ap.error("--vmaf needs --head (the candidate's head file)")
    for precision in args.precisions.split(","):
        m = guard(args.weights, args.head, precision)
        print(f"guard {precision} max_rise_grainy {m['max_rise_grainy']:.3f} max_above_source {m['max_above_source']:.3f}")
    if args.vmaf:
        print("vmaf within_mean %.4f within_min %.4f across %.4f" % vmaf_agreement(args.head, args.vmaf))


if __name__ == "__main__":
    main()
