"""The degradation check: score every ladder of held-out pristine images and report where a score fails to fall.

Ladders come from :mod:`contrique_video.training.degradation`; :mod:`contrique_video.training.head_check` runs
the whole check on a head (``contrique-video degradation-check``), and a CI version of it guards the shipped head
(``tests/training/test_degradation.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from contrique_video.training.degradation import clip_ladders, ladders


#: Score points within which two levels may be the same image (GPU kernels need not give bit-equal features).
TIE = 1e-3


class HeadScorer:
    """Scores frames as ``head.predict(post(extract(frame)))``, caching ``extract`` rows by key
    (source|kind|level[|frame]); ``post`` (e.g. a column slice) lets heads on sub-layouts share one cache."""

    def __init__(self, extract: Callable[[np.ndarray], np.ndarray], head, cache=None,
                 post: Callable[[np.ndarray], np.ndarray] | None = None):
        self.extract = extract
        self.head = head
        self.cache = cache
        self.post = post

    def features(self, key: str, make: Callable[[], np.ndarray]) -> np.ndarray:
        row = np.asarray(self.extract(make()) if self.cache is None else self.cache.get(key, make, self.extract), np.float64)
        return row if self.post is None else self.post(row)

    def score(self, key: str, make: Callable[[], np.ndarray]) -> float:
        return float(self.head.predict(self.features(key, make))[0])


@dataclass
class CheckResult:
    """Scores of every ladder: rows (clip, source, kind, level, label, score)."""

    rows: list[dict]

    def ladders(self) -> dict[tuple[bool, str, str], list[dict]]:
        out: dict = {}
        for r in self.rows:
            out.setdefault((r["clip"], r["source"], r["kind"]), []).append(r)
        return {k: sorted(v, key=lambda r: r["level"]) for k, v in out.items()}

    def pairs(self) -> list[dict]:
        """Every adjacent level pair: better level, worse level, the fall (positive = ordered correctly), and
        ``unchanged`` where the damage left the image as it was (see :func:`run_check`)."""
        out = []
        for (clip, source, kind), lad in self.ladders().items():
            clean = lad[0]["score"]
            for prev, cur in zip(lad, lad[1:]):
                out.append({"clip": clip, "source": source, "kind": kind, "level": cur["level"], "label": cur["label"],
                            "score": cur["score"], "vs_previous": cur["score"] - prev["score"],
                            "vs_clean": cur["score"] - clean, "ordered": cur["score"] < prev["score"],
                            "unchanged": bool(cur.get("unchanged", False))})
        return out

    def summary(self) -> dict:
        """Shares of ordered pairs leave out the unchanged ones: no score can put an image below itself."""
        pairs = self.pairs()
        unchanged = [p for p in pairs if p["unchanged"]]
        stills = [p for p in pairs if not p["clip"] and not p["unchanged"]]
        clips = [p for p in pairs if p["clip"] and not p["unchanged"]]
        per_kind: dict = {}
        for p in stills:
            per_kind.setdefault(p["kind"], []).append(p["ordered"])
        clip_crf: dict = {}
        for p in clips:
            if p["kind"].startswith("crf_"):
                clip_crf.setdefault((p["source"], p["kind"]), []).append(p["ordered"])
        return {
            "still_pairs": len(stills),
            "unchanged_pairs": len(unchanged),
            "unchanged_still_pairs": sum(not p["clip"] for p in unchanged),
            "ordered_share": float(np.mean([p["ordered"] for p in stills])) if stills else float("nan"),
            "per_kind": {k: float(np.mean(v)) for k, v in sorted(per_kind.items())},
            "max_above_clean": max((p["vs_clean"] for p in pairs), default=float("nan")),
            "levels_above_clean_by_1": sum(p["vs_clean"] > 1.0 for p in pairs),
            "levels_above_clean": sum(p["vs_clean"] > 0.0 for p in pairs),
            "levels": len(pairs),
            "clip_pairs": len(clips),
            "clip_ordered_share": float(np.mean([p["ordered"] for p in clips])) if clips else float("nan"),
            "clip_crf_share": {f"{s} {k}": float(np.mean(v)) for (s, k), v in sorted(clip_crf.items())},
            "min_clip_crf_share": min((float(np.mean(v)) for v in clip_crf.values()), default=float("nan")),
        }

    def worst(self, n: int = 10) -> list[dict]:
        """The ``n`` pairs that rose most: by score vs the previous level, then vs clean."""
        return sorted(self.pairs(), key=lambda p: (-max(p["vs_previous"], p["vs_clean"])))[:n]


def run_check(scorer: HeadScorer, sources: dict[str, np.ndarray], kinds: list[str] | None = None,
              clips: dict[str, list[np.ndarray]] | None = None, progress: bool = False) -> CheckResult:
    """Score every ladder of every source (stills) and of every clip (score = mean over its frames).

    A level that scores within :data:`TIE` of the previous level is made again and compared pixel for pixel; if
    the two images are the same (a colour change on a grey photo), its row says ``unchanged`` and the summary
    leaves the pair out. Identical images score the same up to a backend's run-to-run noise, so near-ties are
    the only candidates.
    """
    rows = []
    todo = [(False, name, lad) for name, src in sources.items() for lad in ladders(src, name, kinds)]
    todo += [(True, name, lad) for name, frames in (clips or {}).items() for lad in clip_ladders(frames, name)]
    for i, (clip, name, lad) in enumerate(todo):
        for level in range(lad.n):
            base = f"{name}|{lad.kind}|{level}"
            if clip:
                cached: dict = {}

                def frame(j, level=level, lad=lad, cached=cached):
                    if "frames" not in cached:
                        cached["frames"] = lad.make(level)
                    return cached["frames"][j]

                n_frames = len(clips[name])
                score = float(np.mean([scorer.score(f"clip:{base}|{j}", lambda j=j: frame(j)) for j in range(n_frames)]))
            else:
                score = scorer.score(base, lambda level=level, lad=lad: lad.make(level))
            row = {"clip": clip, "source": name, "kind": lad.kind, "level": level, "label": lad.labels[level],
                   "score": score}
            if level and abs(score - rows[-1]["score"]) <= TIE:
                row["unchanged"] = bool(np.array_equal(np.asarray(lad.make(level)), np.asarray(lad.make(level - 1))))
            rows.append(row)
        if progress:
            print(f"[{i + 1}/{len(todo)}] {'clip ' if clip else ''}{name} {lad.kind}", flush=True)
    return CheckResult(rows)


def short_name(source: str) -> str:
    """A source as its file stem, for report lines (``package:sklearn/.../china.jpg`` -> ``china``); generated
    sources keep their name (``gen:text/100``)."""
    if source.startswith("gen:"):
        return source
    return Path(source.split(":", 1)[-1]).stem


def report(result: CheckResult, worst: int = 12) -> str:
    """The check as text: share of ordered adjacent pairs per type and overall, clips, the worst cases."""
    s = result.summary()
    lines = [f"{'type':<26} ordered adjacent pairs"]
    for kind, share in s["per_kind"].items():
        lines.append(f"{kind:<26} {100 * share:6.1f}%")
    lines.append(f"{'ALL (stills)':<26} {100 * s['ordered_share']:6.1f}%  of {s['still_pairs']} pairs")
    if s["unchanged_pairs"]:
        lines.append(f"left out: {s['unchanged_pairs']} pairs whose damage left the image unchanged "
                     "(e.g. colour changes on a grey photo)")
    if s["clip_pairs"]:
        lines.append(f"{'clips, all ladders':<26} {100 * s['clip_ordered_share']:6.1f}%  of {s['clip_pairs']} pairs")
        for name, share in s["clip_crf_share"].items():
            lines.append(f"  clip {short_name(name.split(' ')[0])} {name.split(' ')[1]:<16} CRF pairs falling {100 * share:5.1f}%")
    lines.append(f"levels scoring above their clean source: {s['levels_above_clean']} of {s['levels']} "
                 f"({s['levels_above_clean_by_1']} by more than 1 point); most: {s['max_above_clean']:+.2f}")
    lines.append("worst cases (type, image, level, score, vs previous level, vs clean):")
    for p in result.worst(worst):
        lines.append(f"  {'clip ' if p['clip'] else ''}{p['kind']:<24} {short_name(p['source']):<28} {str(p['label']):>6} "
                     f"{p['score']:7.2f} {p['vs_previous']:+7.2f} {p['vs_clean']:+7.2f}")
    return "\n".join(lines)


def append_csv(path: Path, rows: list[tuple[str, str, float]], command: str) -> None:
    """Append (head, metric, value) rows to a results CSV with the columns date, cpu, commit, command, head,
    metric, value (the header is written with the first rows)."""
    import csv
    import datetime
    import platform
    import subprocess

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["date", "cpu", "commit", "command", "head", "metric", "value"])
        for head, metric, value in rows:
            w.writerow([datetime.date.today().isoformat(), cpu, commit, command, head, metric, f"{value:.4f}"])

