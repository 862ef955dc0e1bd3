"""``crf-search`` and ``ladder``: thin layers over :mod:`contrique_video.encoding.crf_search` and
:mod:`contrique_video.encoding.ladder`. Both take the same encode options (:func:`encode_options`); every
encode runs the ffmpeg CLI (--ffmpeg PATH, else ffmpeg on PATH, else imageio-ffmpeg's).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

from contrique_video.cli.options import (
    apply,
    display_option,
    fail,
    guard_outputs,
    guarded,
    known_head,
    logs_above_bars,
    model_options,
    open_scorer,
    output_dir_option,
    output_file,
    pick_output_dir,
    progress_bar,
    quiet_option,
)
from contrique_video.errors import ContriqueError, InputError

log = logging.getLogger("contrique_video")


def encode_options(fn):
    """The encode options of ``crf-search`` and ``ladder`` (ab-av1's encoder arguments), defined once."""
    return apply([
        click.option("--encoder", default="libx264", show_default=True,
                     help="Any ffmpeg video encoder, hardware ones included (h264_nvenc, hevc_qsv, av1_vaapi, ...)."),
        click.option("--quality-option", "quality_option", metavar="NAME",
                     help="The encoder's CRF-like option, for an encoder not known here (known: -crf, -cq for "
                          "*_nvenc, -global_quality for *_qsv, -qp for *_vaapi and librav1e)."),
        click.option("--preset", help="Encoder preset (-cpu-used for libvpx-vp9/libaom-av1; default: libx264/libx265 "
                                      "medium, libsvtav1 8, libvpx-vp9 4, libaom-av1 6, else the encoder's)."),
        click.option("--ffmpeg", "ffmpeg", type=click.Path(dir_okay=False),
                     help="The ffmpeg binary that encodes (default: ffmpeg on PATH, else imageio-ffmpeg's)."),
        click.option("--enc", "enc", multiple=True, metavar="KEY=VALUE",
                     help="Encoder option passed through (repeatable), e.g. --enc tune=grain --enc x265-params=aq-mode=3."),
        click.option("--pix-format", "pix_format", default="yuv420p", show_default=True,
                     help="Pixel format to encode in, e.g. yuv420p10le for 10-bit."),
        click.option("--vfilter", help="ffmpeg filter chain run before encoding, e.g. 'scale=1280:-2' (the encodes, "
                                       "and so the scores, are of the filtered video)."),
        click.option("--keyint", type=int, help="Key frame interval in frames (ffmpeg's -g; default: the encoder's)."),
    ], fn)


def scoring_options(fn):
    """How ``crf-search`` and ``ladder`` score their encodes."""
    return apply([
        click.option("--head", help="Head name or JSON file (default: the one `score` uses, the model card's)."),
        click.option("--frames", type=click.IntRange(1), default=8, show_default=True,
                     help="Frames scored per encode (spread uniformly)."),
        click.option("--workdir", type=click.Path(file_okay=False), help="Folder for temporary files (default: system temp)."),
    ], fn)


def crf_list(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    """``--crf`` parsed while parsing, so a malformed or descending grid is a usage error."""
    from contrique_video.encoding.ladder import parse_crfs

    try:
        return parse_crfs(value)
    except InputError as exc:
        raise click.BadParameter(str(exc).split(": ", 1)[-1]) from None


def check_crf_range(spec, option: str, *crfs: int | None) -> None:
    """CRFs outside the encoder's scale are usage errors, found before the model loads."""
    encoder = spec.name
    for crf in crfs:
        if crf is not None and not spec.crf_min <= crf <= spec.crf_max:
            raise click.BadParameter(f"CRF {crf} is outside {encoder}'s range {spec.crf_min}..{spec.crf_max}",
                                     param_hint=f"'{option}'")


def check_target(target: float, head: str | None, weights: str | None):
    """The head (see :func:`known_head`) with ``--target`` checked against its range as a usage error."""
    h = known_head(head, weights)
    if h is None:
        return None
    lo, hi = h.range
    if not lo <= target <= hi:
        raise click.BadParameter(f"{target:g} is outside the range {lo:g}..{hi:g} of head {h.name!r} ({h.scale})",
                                 param_hint="'--target'")
    return h


def reference_option(measured: str):
    """``--reference REF`` for ``crf-search`` and ``ladder``: the file VMAF is measured against."""
    return click.option("--reference", "reference", type=click.Path(exists=True, dir_okay=False), metavar="REF",
                        help=f"Measure {measured} with libvmaf against REF, the master INPUT was made from "
                             "(implies --vmaf, which measures against INPUT itself).")


def make_settings(encoder: str, preset, pix_format, vfilter, keyint, enc, ffmpeg, quality_option):
    """The encoder's spec and EncodeSettings from the options; a value the encoder refuses is a usage error
    (exit 2), an encoder or ffmpeg missing here an input error (exit 1)."""
    from contrique_video.encoding.encode import (
        EncodeSettings,
        check_encoder,
        check_settings,
        parse_enc,
    )

    spec = check_encoder(encoder, ffmpeg, quality_option)  # checked first: exit 1
    try:
        if keyint is not None and keyint < 1:
            raise InputError(f"--keyint {keyint}: give a positive number of frames")
        settings = EncodeSettings(preset, pix_format, vfilter, keyint, parse_enc(enc), quality_option)
        check_settings(encoder, settings, ffmpeg)
    except ContriqueError as exc:
        raise click.UsageError(str(exc)) from None
    return spec, settings


@click.command("crf-search")
@quiet_option
@click.argument("input_path", metavar="INPUT")
@click.option("--target", type=float, required=True, help="Score the encode must reach (on the head's scale).")
@click.option("--pool", type=click.Choice(["mean", "harmonic_mean", "p5", "p1", "min"]), default="mean", show_default=True,
              help="What the target applies to: the video score (mean), or a pooling of its frame scores.")
@click.option("--samples", type=click.IntRange(1), default=4, show_default=True, help="Samples taken across the input.")
@click.option("--sample-duration", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True,
              help="Seconds per sample.")
@click.option("--min-crf", type=int, help="Lowest CRF searched (default: 10, or the encoder's minimum).")
@click.option("--max-crf", type=int, help="Highest CRF searched (default: the encoder's maximum).")
@click.option("--max-probes", type=click.IntRange(1, 64), default=6, show_default=True,
              help="Most encodes tried before the best CRF so far is reported.")
@click.option("--max-encoded-percent", type=click.FloatRange(min=0, min_open=True),
              help="Refuse a CRF whose predicted size is above this share of the input file (ab-av1's default is 80; "
                   "default here: no limit).")
@click.option("--encode", "encode_path", type=click.Path(dir_okay=False), callback=output_file(),
              help="Then encode the whole input at the chosen CRF to this file (audio copied) and score it "
                   "(ab-av1's auto-encode); adds an `encode` event.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "ndjson"]), default="table", show_default=True,
              help="json: JSON Lines, one event per line as it happens (samples, probe..., result, encode; error when "
                   "it fails); ndjson is the same.")
@click.option("--vmaf", "with_vmaf", is_flag=True,
              help="Also measure each probe (against the sample reel) and the --encode output (against INPUT) with "
                   "libvmaf; adds `vmaf` to those events. Needs imageio-ffmpeg's ffmpeg.")
@reference_option("each probe (against REF cut at the same samples) and the --encode output")
@encode_options
@scoring_options
@model_options
@click.pass_context
@guarded
def crf_search_command(ctx, input_path, target, pool, samples, sample_duration, min_crf, max_crf, max_probes,
                       max_encoded_percent, encode_path, fmt, with_vmaf, reference, encoder, quality_option, preset, ffmpeg, enc,
                       pix_format, vfilter, keyint, head, frames, workdir, **model):
    """Find the CRF whose encode of INPUT scores --target, from scored samples (ab-av1 style).

    Exit 0 with a result, 1 when the target is out of reach, the CRF would be too big, or something failed
    (one line on stderr; with --format json the probes already printed stay valid and an error event marks
    the run partial), 2 for usage errors.
    """
    from contrique_video.encoding.crf_search import (
        DEFAULT_MIN_CRF,
        crf_search,
        encode_chosen,
    )
    if encode_path:
        try:
            guard_outputs([input_path, reference], encode_path)
        except InputError as exc:
            raise click.UsageError(f"--encode: {exc}") from None
    spec, settings = make_settings(encoder, preset, pix_format, vfilter, keyint, enc, ffmpeg, quality_option)
    check_crf_range(spec, "--min-crf", min_crf)
    check_crf_range(spec, "--max-crf", max_crf)
    lo = max(spec.crf_min, DEFAULT_MIN_CRF) if min_crf is None else min_crf
    hi = spec.crf_max if max_crf is None else max_crf
    if lo >= hi:
        raise click.UsageError(f"--min-crf {lo} must be below --max-crf {hi}")
    check_target(target, head, model.get("weights"))

    bars: list[tqdm] = []  # from the samples event: probes, at most --max-probes

    def on_event(event: dict) -> None:
        if event["type"] == "samples":
            bars.append(progress_bar(ctx, "crf-search", max_probes, unit="probe"))
        elif event["type"] == "probe":
            bars[0].update(1)
            bars[0].set_postfix_str(f"crf {event['crf']}: score {event['score']:.2f}")
        if fmt in ("json", "ndjson"):
            click.echo(json.dumps(event))
            sys.stdout.flush()
        elif event["type"] == "probe":
            log.info("crf %d: %s %.2f, %.0f kbps, encoded in %.1f s%s", event["crf"], pool, event["score"],
                     event["kbps"], event["encode_seconds"], f", VMAF {event['vmaf']:.2f}" if "vmaf" in event else "")

    if with_vmaf or reference:
        from contrique_video.encoding.reference import vmaf_ffmpeg

        vmaf_ffmpeg()
    scorer = open_scorer(head, model)
    try:
        with logs_above_bars():
            result = crf_search(input_path, scorer, encoder, target, samples=samples, sample_duration=sample_duration,
                                frames=frames, min_crf=min_crf, max_crf=max_crf, max_probes=max_probes, preset=preset,
                                ffmpeg=ffmpeg, workdir=workdir, on_event=on_event, settings=settings, pool=pool,
                                max_encoded_percent=max_encoded_percent, vmaf=with_vmaf, reference=reference)
    finally:
        for bar in bars:
            bar.close()
    if fmt == "table":
        size = f", {result.predicted_percent:.0f}% of the input" if result.predicted_percent is not None else ""
        took = f", about {result.predicted_encode_seconds:.0f} s to encode" if result.predicted_encode_seconds else ""
        click.echo(f"{encoder} crf {result.crf}: predicted {pool} score {result.score:.2f} (target {target:g}, head "
                   f"{result.head}), "
                   f"{result.kbps:.0f} kbps, {result.predicted_bytes / 1e6:.2f} MB for the whole input{size}{took}")
    if not result.reached:
        fail(f"target {target:g} not reached: even CRF {result.crf} scores {result.score:.2f} ({pool})")
        sys.exit(1)
    if result.too_big:
        fail(f"CRF {result.crf} would be {result.predicted_percent:.0f}% of the input, above "
             f"--max-encoded-percent {max_encoded_percent:g}")
        sys.exit(1)
    if encode_path:
        log.info("encoding %s at crf %d to %s: ffmpeg %s", input_path, result.crf, encode_path,
                 " ".join(result.ffmpeg_args[:-1] + [encode_path]))
        from contrique_video.encoding.probe import media_info

        info = media_info(input_path)
        totals = {"encode": round((info.duration or 0) * info.fps) or None, "score": frames * samples}
        stages: dict[str, tqdm] = {}

        def on_progress(stage: str, n: int) -> None:  # one bar at a time: the encode's frames, then the scored
            if stage not in stages:
                for bar in stages.values():
                    bar.close()
                stages[stage] = progress_bar(ctx, stage, totals[stage])
            stages[stage].update(n - stages[stage].n)

        try:
            with logs_above_bars():
                event = encode_chosen(input_path, encode_path, result, scorer, frames=frames * samples,
                                      settings=settings, ffmpeg=ffmpeg, vmaf=with_vmaf, reference=reference,
                                      on_progress=on_progress)
        finally:
            for bar in stages.values():
                bar.close()
        if fmt in ("json", "ndjson"):
            on_event(event)
        else:
            pct = f", {event['percent']:.0f}% of the input" if event["percent"] is not None else ""
            vm = f", VMAF {event['vmaf']:.2f}" if "vmaf" in event else ""
            click.echo(f"{encode_path}: {pool} score {event['score']:.2f} (target {target:g}){vm}, "
                       f"{event['kbps']:.0f} kbps{pct}, encoded in {event['encode_seconds']:.0f} s")


@click.command("ladder")
@quiet_option
@click.argument("input_path", metavar="INPUT")
@click.option("--heights", default="1080,720,540,360", show_default=True,
              help="Rendition heights; those above the source's are skipped.")
@click.option("--crf", "crf_grid", default="18:42:4", show_default=True, callback=crf_list,
              help="CRFs: START:STOP:STEP (ascending, STOP included) or a list a,b,c.")
@display_option("The size the renditions are upscaled to and scored at, e.g. 1920x1080 (default: the source size).")
@click.option("--rungs", type=click.IntRange(1), default=4, show_default=True, help="Rungs to recommend from the hull.")
@output_dir_option("Folder for ladder.csv, ladder.json and ladder.png (ladder.partial.* if the run stops early).")
@click.option("--keep-renditions", is_flag=True, help="Keep the encodes in OUTPUT/renditions.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="stdout: a table of the renditions, or json: the ladder (ladder.json's object) on one line, "
                   "JSON Lines as in score and crf-search.")
@click.option("--vmaf", "with_vmaf", is_flag=True,
              help="Also measure every rendition (at the display size) against INPUT with libvmaf: a vmaf column.")
@reference_option("every rendition (scaled to REF's size)")
@encode_options
@scoring_options
@model_options
@click.pass_context
@guarded
def ladder_command(ctx, input_path, heights, crf_grid, display, rungs, outdir, out_alias, keep_renditions, fmt,
                   with_vmaf, reference, encoder, quality_option, preset, ffmpeg, enc, pix_format, vfilter, keyint, head,
                   frames, workdir, **model):
    """Encode INPUT at every height x CRF, score each rendition at the display size, and recommend rungs
    from the upper convex hull of score against bitrate.

    Exit 0 when the grid is complete, 1 when it stopped early (the finished renditions are written as
    ladder.partial.csv/json/png and the error is one line on stderr), 130 on Ctrl-C and 143 on SIGTERM
    (the finished renditions are written as ladder.partial.* too).
    """
    from contrique_video.encoding.ladder import build_ladder
    from contrique_video.runs.inputs import Terminated, sigterm_as_exception

    outdir = pick_output_dir(outdir, out_alias)
    try:
        sizes = [int(h) for h in heights.split(",")]
    except ValueError:
        raise click.BadParameter("give numbers, e.g. --heights 1080,720", param_hint="--heights") from None
    spec, settings = make_settings(encoder, preset, pix_format, vfilter, keyint, enc, ffmpeg, quality_option)
    check_crf_range(spec, "--crf", *crf_grid)
    if with_vmaf or reference:
        from contrique_video.encoding.reference import vmaf_ffmpeg

        vmaf_ffmpeg()
    scorer = open_scorer(head, model)
    bars: list[tqdm] = []

    def on_rendition(r) -> None:
        bars[0].update(1)
        bars[0].set_postfix_str(f"{r.height}p crf {r.crf}: score {r.score:.2f}")
        log.info("%dp crf %d: %.0f kbps, score %.2f%s", r.height, r.crf, r.kbps, r.score,
                 "" if r.vmaf is None else f", VMAF {r.vmaf:.2f}")

    try:
        with sigterm_as_exception(), logs_above_bars():
            try:
                ladder = build_ladder(input_path, scorer, encoder, sizes, crf_grid, display=display, frames=frames,
                                      rungs=rungs, ffmpeg=ffmpeg, workdir=workdir, settings=settings,
                                      keep=Path(outdir) / "renditions" if keep_renditions else None,
                                      on_rendition=on_rendition, vmaf=with_vmaf, reference=reference,
                                      on_plan=lambda n: bars.append(progress_bar(ctx, "ladder", n, unit="rendition")))
            finally:
                for bar in bars:
                    bar.close()
    except (KeyboardInterrupt, Terminated) as exc:
        ladder = getattr(exc, "ladder", None)
        code, what = (130, "interrupted") if isinstance(exc, KeyboardInterrupt) else (143, "terminated")
        if ladder is None:  # stopped before the grid started: nothing to keep
            fail(what)
            sys.exit(code)
        report_ladder(ladder, outdir, fmt)
        fail(f"{what}: {len(ladder.renditions)} finished renditions kept as partial in {outdir}")
        sys.exit(code)
    report_ladder(ladder, outdir, fmt)
    if ladder.partial:
        fail(f"ladder stopped early, {len(ladder.renditions)} renditions kept as partial: {ladder.error}")
        sys.exit(1)


def report_ladder(ladder, outdir: str, fmt: str) -> None:
    """Write the ladder files (ladder.partial.* for a partial run) and print it on stdout."""
    from contrique_video.encoding.ladder import save

    paths = save(ladder, outdir)
    if fmt == "json":
        click.echo(json.dumps(ladder.record()))
    else:
        table = ladder.table()
        table["mark"] = np.where(table["rung"], "rung", np.where(table["on_hull"], "hull", ""))
        shown = ["height", "width", "crf", "kbps", "score"] + (["vmaf"] if "vmaf" in table else []) + ["mark"]
        click.echo(table[shown].to_string(index=False, float_format="%.2f"))
    log.info("wrote %s", ", ".join(map(str, paths)))
