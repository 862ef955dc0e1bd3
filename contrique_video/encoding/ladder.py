"""Per-title encoding ladders: encode a grid of heights x CRFs, score each rendition at the display size,
and keep the renditions on the upper convex hull of score against bitrate.

The hull is taken in linear bitrate, where its points are the ones no mix of two other renditions beats
(the rate-distortion sense); only its rising part is kept, from the cheapest rendition to the best one.
Rungs are picked from the hull spread evenly in log bitrate, as players switch between them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from contrique_video.encoding.encode import EncodeSettings, check_crf, check_encoder, check_settings, encode
from contrique_video.encoding.hooks import score_rendition
from contrique_video.encoding.probe import media_info
from contrique_video.errors import ContriqueError, InputError

log = logging.getLogger("contrique_video")
COLUMNS = ["height", "width", "crf", "bytes", "kbps", "score", "p5", "on_hull", "rung"]


@dataclass
class Rendition:
    height: int
    width: int
    crf: int
    bytes: int
    kbps: float
    score: float
    p5: float
    on_hull: bool = False
    rung: bool = False
    vmaf: float | None = None  # libvmaf against the source or --reference, at the display size (ladder --vmaf)


@dataclass
class Ladder:
    """A ladder run. ``partial`` is True when it stopped early; ``renditions`` then holds those finished."""

    input: str
    encoder: str
    display: tuple[int, int]
    head: str
    scale: str
    higher_is_better: bool
    settings: dict = field(default_factory=dict)  # the encode options every rendition used (EncodeSettings.record)
    renditions: list[Rendition] = field(default_factory=list)
    partial: bool = False
    error: str | None = None
    reference: str | None = None  # what VMAF was measured against (the input itself with --vmaf alone)

    def table(self) -> pd.DataFrame:
        """One row per rendition; a ``vmaf`` column only when VMAF was measured (``--vmaf``)."""
        with_vmaf = any(r.vmaf is not None for r in self.renditions)
        return pd.DataFrame([asdict(r) for r in self.renditions], columns=COLUMNS + (["vmaf"] if with_vmaf else []))

    def record(self) -> dict:
        return {"input": self.input, "encoder": self.encoder, "display": list(self.display), "head": self.head,
                "scale": self.scale, **self.settings, "higher_is_better": self.higher_is_better, "partial": self.partial,
                "error": self.error, "reference": self.reference, "renditions": [asdict(r) for r in self.renditions],
                "rungs": [asdict(r) for r in self.renditions if r.rung]}


def parse_crfs(text: str) -> list[int]:
    """``18:42:4`` (start:stop:step, stop included) or ``22,30,38``."""
    try:
        if ":" in text:
            start, stop, step = (int(v) for v in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            return list(range(start, stop + 1, step))
        return sorted({int(v) for v in text.split(",")})
    except ValueError:
        raise InputError(f"--crf {text!r}: give START:STOP:STEP, ascending (e.g. 18:42:4) or a list (e.g. 22,30,38)") from None


def upper_hull(x: Sequence[float], y: Sequence[float]) -> list[int]:
    """Indices of the rising upper convex hull of points (x, y), in increasing x.

    First the Pareto front (no other point has x at most and y at least, one strictly), then Andrew's
    monotone chain over it, dropping points on or under a chord.
    """
    order = sorted(range(len(x)), key=lambda i: (x[i], -y[i]))
    front: list[int] = []
    for i in order:
        if not front or y[i] > y[front[-1]]:
            front.append(i)
    hull: list[int] = []
    for i in front:
        while len(hull) >= 2:
            o, a = hull[-2], hull[-1]
            cross = (x[a] - x[o]) * (y[i] - y[o]) - (y[a] - y[o]) * (x[i] - x[o])
            if cross < 0:
                break
            hull.pop()
        hull.append(i)
    return hull


def pick_rungs(kbps: Sequence[float], hull: Sequence[int], count: int) -> list[int]:
    """Up to ``count`` hull points spread evenly in log bitrate, always the cheapest and the best."""
    if len(hull) <= count:
        return list(hull)
    logs = np.log([kbps[i] for i in hull])
    chosen = {hull[int(np.argmin(np.abs(logs - t)))] for t in np.linspace(logs[0], logs[-1], count)}
    return [i for i in hull if i in chosen]


def mark(ladder: Ladder, rungs: int) -> None:
    """Set ``on_hull`` and ``rung`` on the renditions (quality made 'higher is better' first)."""
    r = ladder.renditions
    if not r:
        return
    sign = 1.0 if ladder.higher_is_better else -1.0
    kbps = [x.kbps for x in r]
    hull = upper_hull(kbps, [sign * x.score for x in r])
    picked = set(pick_rungs(kbps, hull, rungs))
    for i, x in enumerate(r):
        x.on_hull, x.rung = i in hull, i in picked


@dataclass(frozen=True)
class Grid:
    """The renditions :func:`build_ladder` makes and how it judges them: every height (those above the source's
    are skipped) times every CRF, each scored on ``frames`` frames upscaled to ``display`` (width, height;
    default: the source size), and ``rungs`` recommended from the hull."""

    heights: Sequence[int]
    crfs: Sequence[int]
    display: tuple[int, int] | None = None
    frames: int = 8
    rungs: int = 4


@dataclass(frozen=True)
class Hooks:
    """What :func:`build_ladder` tells its caller: ``on_plan(count)`` once the heights above the source are
    dropped, ``on_rendition(rendition)`` as each is scored, ``inspect(height, crf, display_file)`` with each
    file it scores."""

    on_plan: Callable[[int], None] = lambda count: None
    on_rendition: Callable[[Rendition], None] = lambda r: None
    inspect: Callable[[int, int, Path], None] | None = None


def build_ladder(
    path: str | os.PathLike,
    scorer,
    encoder: str,
    grid: Grid,
    *,
    settings: EncodeSettings | None = None,
    ffmpeg: str | None = None,
    workdir: str | os.PathLike | None = None,
    keep: str | os.PathLike | None = None,
    vmaf: bool = False,
    reference: str | os.PathLike | None = None,
    hooks: Hooks = Hooks(),
) -> Ladder:
    """Encode every (height, CRF) of ``grid``, score it upscaled to the display size, mark the hull.

    An encoder or scorer failure stops the grid: the ladder comes back with ``partial=True`` and the error,
    holding the renditions finished before it, their hull and rungs. ``keep`` keeps the encodes there;
    otherwise every temporary file is removed. ``hooks`` are told the plan, each rendition and each scored file.
    ``vmaf`` measures each display-size file against the source with libvmaf too (run by ``ffmpeg`` when
    given); a ``reference`` (the master ``path`` was made from) is measured against instead, and implies ``vmaf``.

    Ctrl-C, SIGTERM turned into an exception, or any other exception that is not an input or model error
    propagates, carrying the finished part (partial, hull marked) as its ``ladder`` attribute so the caller
    can still save it.
    """
    heights, crfs, display, frames, rungs = grid.heights, grid.crfs, grid.display, grid.frames, grid.rungs
    inspect = hooks.inspect
    settings = settings or EncodeSettings()
    spec = check_encoder(encoder, ffmpeg, settings.quality_option)
    check_settings(encoder, settings, ffmpeg)
    for crf in crfs:
        check_crf(spec, crf)
    head = scorer.check_head()
    info = media_info(path)
    vmaf_ref = reference if reference is not None else path if vmaf else None
    ref_size = None
    if vmaf_ref is not None:
        ref = media_info(vmaf_ref)
        ref_size = (ref.width, ref.height)
    size = display or (info.width - info.width % 2, info.height - info.height % 2)
    usable = sorted({h for h in heights if h <= info.height}, reverse=True)
    if dropped := sorted(set(heights) - set(usable)):
        log.warning("skipping heights above the source's %d: %s", info.height, ", ".join(map(str, dropped)))
    if not usable or not crfs:
        raise InputError(f"no rendition to make: heights {list(heights)} for a {info.height}-line source, CRFs {list(crfs)}")
    ladder = Ladder(str(path), encoder, size, head.name, head.scale, head.higher_is_better,
                    {**settings.record(), "preset": settings.preset or spec.preset},
                    reference=None if vmaf_ref is None else str(vmaf_ref))
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
    hooks.on_plan(len(usable) * len(crfs))
    with tempfile.TemporaryDirectory(prefix="contrique-ladder-", dir=workdir) as tmp:
        try:
            for height in usable:
                for crf in crfs:
                    name = f"{height}p_crf{crf}.mkv"
                    out = encode(path, Path(tmp) / name, encoder, crf, height=None if height == info.height else height,
                                 ffmpeg=ffmpeg, settings=settings)
                    measured: dict = {}

                    def seen(f, h=height, c=crf, measured=measured):
                        if vmaf_ref is not None:
                            from contrique_video.encoding.reference import run_vmaf

                            scale = None if size == ref_size else ref_size
                            measured["vmaf"] = float(run_vmaf(f, vmaf_ref, size=scale, ffmpeg=ffmpeg).pooled["mean"])
                        if inspect:
                            inspect(h, c, f)

                    rec = score_rendition(out.path, size, scorer=scorer, frames=frames,
                                          workdir=tmp, inspect=seen if (inspect or vmaf_ref) else None, ffmpeg=ffmpeg)
                    rendition = Rendition(height, out.width, crf, out.bytes, out.kbps, rec["score"], rec["pooled"]["p5"],
                                          vmaf=measured.get("vmaf"))
                    ladder.renditions.append(rendition)
                    hooks.on_rendition(rendition)
                    if keep:
                        shutil.move(out.path, Path(keep) / name)
                    else:
                        out.path.unlink()
        except ContriqueError as exc:
            ladder.partial, ladder.error = True, str(exc)
        except BaseException as exc:  # Ctrl-C, SIGTERM: keep what is finished for the caller to save
            ladder.partial, ladder.error = True, f"stopped by {type(exc).__name__}"
            mark(ladder, rungs)
            exc.ladder = ladder
            raise
    mark(ladder, rungs)
    return ladder


def save(ladder: Ladder, outdir: str | os.PathLike,
         plot: Callable[[Ladder, Path], Path] | None = None) -> list[Path]:
    """``ladder.csv`` and ``ladder.json`` in ``outdir`` (``ladder.partial.*`` for a partial run), and ``ladder.png``
    drawn by ``plot`` when given (``contrique_video.runs.plot.plot_ladder``; the CLI passes it), so the ladder
    needs no plotting library and the tables are written before any plot."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    stem = "ladder.partial" if ladder.partial else "ladder"
    paths = [out / f"{stem}.csv", out / f"{stem}.json"]
    ladder.table().to_csv(paths[0], index=False, float_format="%.4f")
    paths[1].write_text(json.dumps(ladder.record(), indent=1))
    if plot and ladder.renditions:
        paths.append(plot(ladder, out / f"{stem}.png"))
    return paths

