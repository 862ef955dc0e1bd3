"""``crf-search`` and ``ladder``: thin layers over :mod:`contrique_video.encoding.crf_search` and
:mod:`contrique_video.encoding.ladder`. Both take the same encode options (:func:`encode_options`); every
encode runs the ffmpeg CLI (--ffmpeg PATH, else ffmpeg on PATH, else imageio-ffmpeg's).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

from contrique_video.cli.options import (
    display_option,
    fail,
    guard_outputs,
    guarded,
    known_head,
    logs_above_bars,
    model_options,
    open_scorer,
    option_group,
    output_dir_option,
    output_file,
    progress_bar,
    quiet_option,
    shared,
)
from contrique_video.encoding.crf_search import POOLS, SearchSettings
from contrique_video.encoding.ladder import Grid
from contrique_video.errors import ContriqueError, InputError, UsageError

log = logging.getLogger("contrique_video")


@dataclass(frozen=True)
class EncodeOptions:
    """The encode options of ``crf-search`` and ``ladder`` as given; :func:`make_settings` checks them."""

    encoder: str
    quality_option: str | None
    preset: str | None
    ffmpeg: str | None
    enc: tuple[str, ...]
    pix_format: str
    vfilter: str | None
    keyint: int | None


def encode_options(fn):
    """The encode options of ``crf-search`` and ``ladder`` (ab-av1's encoder arguments), defined once, handed to
    the command as one ``encode`` (an :class:`EncodeOptions`)."""
    return option_group("encode", EncodeOptions, [
        click.option("--encoder", default="libx264", show_default=True,
                     help="Any ffmpeg video encoder, hardware ones included (h264_nvenc, hevc_qsv, av1_vaapi, ...)."),
        click.option("--quality-option", "quality_option", metavar="NAME",
                     help="The encoder's CRF-like option, for an encoder not known here (known: -crf, -cq for "
                          "*_nvenc, -global_quality for *_qsv, -qp for *_vaapi and librav1e)."),
        click.option("--preset", help="Encoder preset (-cpu-used for libvpx-vp9/libaom-av1; default: libx264/libx265 "
                                      "medium, libsvtav1 8, libvpx-vp9 4, libaom-av1 6, else the encoder's)."),
        shared("ffmpeg"),
        click.option("--enc", "enc", multiple=True, metavar="KEY=VALUE",
                     help="Encoder option passed through (repeatable), e.g. --enc tune=grain --enc x265-params=aq-mode=3."),
        click.option("--pix-format", "pix_format", default="yuv420p", show_default=True,
                     help="Pixel format to encode in, e.g. yuv420p10le for 10-bit."),
        click.option("--vfilter", help="ffmpeg filter chain run before encoding, e.g. 'scale=1280:-2' (the encodes, "
                                       "and so the scores, are of the filtered video)."),
        click.option("--keyint", type=int, help="Key frame interval in frames (ffmpeg's -g; default: the encoder's)."),
    ])(fn)


#: --frames of crf-search and ladder: why 8 and not score's 64.
ENCODE_FRAMES = shared("frames", "N frames scored per encode (default 8: crf-search and ladder score many "
                                 "encodes; `score` defaults to 64 for one input).", default=8, show_default=True)
WORKDIR = click.option("--workdir", type=click.Path(file_okay=False), help="Folder for temporary files (default: system temp).")


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
    return shared("reference", f"{measured}; REF is the master INPUT was made from (implies --vmaf, which "
                               "measures against INPUT itself).")


def make_settings(o: EncodeOptions):
    """The encoder's spec and EncodeSettings from the options; a value the encoder refuses is a usage error
    (exit 2), an encoder or ffmpeg missing here an input error (exit 1)."""
    from contrique_video.encoding.encode import (
        EncodeSettings,
        check_encoder,
        check_settings,
        parse_enc,
    )

    spec = check_encoder(o.encoder, o.ffmpeg, o.quality_option)  # checked first: exit 1
    try:
        if o.keyint is not None and o.keyint < 1:
            raise InputError(f"--keyint {o.keyint}: give a positive number of frames")
        settings = EncodeSettings(o.preset, o.pix_format, o.vfilter, o.keyint, parse_enc(o.enc), o.quality_option)
        check_settings(o.encoder, settings, o.ffmpeg)
    except ContriqueError as exc:
        raise click.UsageError(str(exc)) from None
    return spec, settings


@click.command("crf-search")
@quiet_option
@click.argument("input_path", metavar="INPUT")
@click.option("--target", type=float, required=True, help="Score the encode must reach (on the head's scale).")
@option_group("search", SearchSettings, [
    click.option("--pool", type=click.Choice(POOLS), default="mean", show_default=True,
                 help="What the target applies to: the video score (mean), or a pooling of its frame scores."),
    click.option("--samples", type=click.IntRange(1), default=4, show_default=True, help="Samples taken across the input."),
    click.option("--sample-duration", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True,
                 help="Seconds per sample."),
    ENCODE_FRAMES,
    click.option("--min-crf", type=int, help="Lowest CRF searched (default: 10, or the encoder's minimum)."),
    click.option("--max-crf", type=int, help="Highest CRF searched (default: the encoder's maximum)."),
    click.option("--max-probes", type=click.IntRange(1, 64), default=6, show_default=True,
                 help="Most encodes tried before the best CRF so far is reported."),
    click.option("--max-encoded-percent", type=click.FloatRange(min=0, min_open=True),
                 help="Refuse a CRF whose predicted size is above this share of the input file (ab-av1's default is "
                      "80; default here: no limit)."),
])
@click.option("--encode", "encode_path", type=click.Path(dir_okay=False), callback=output_file(),
              help="Then encode the whole input at the chosen CRF to this file (audio copied) and score it "
                   "(ab-av1's auto-encode); adds an `encode` event.")
@shared("output", "the run's events as JSON Lines (samples, probe..., result, encode; error when it fails), the "
                  "lines --format json prints, each flushed as it happens.",
        type=click.Path(dir_okay=False), callback=output_file(".jsonl", ".ndjson"))
@shared("format", "crf-search: json prints one event per line as it happens (see -o); table the result.",
        choices=("table", "json"))
@shared("vmaf", "each probe (against the sample reel) and the --encode output; adds `vmaf` to those events.")
@reference_option("each probe (against REF cut at the same samples) and the --encode output")
@encode_options
@model_options()
@WORKDIR
@click.pass_context
@guarded
def crf_search_command(ctx, input_path, target, search, encode_path, output, fmt, with_vmaf, reference, encode, model,
                       workdir):
    """Find the CRF whose encode of INPUT scores --target, from scored samples (ab-av1 style).

    Exit codes: 0 with a result, 1 when the target is out of reach, the CRF would be too big, or something failed
    (one line on stderr; with --format json the probes already printed stay valid and an error event marks
    the run partial), 2 for usage errors, 130 on Ctrl-C.
    """
    from contrique_video.encoding.crf_search import crf_search, encode_chosen

    for option, path in (("--encode", encode_path), ("--output", output)):
        try:
            guard_outputs([input_path, reference], path)
        except InputError as exc:
            raise click.UsageError(f"{option}: {exc}") from None
    spec, settings = make_settings(encode)
    try:
        search.crf_range(spec)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    check_target(target, model.head, model.weights)
    bars: list[tqdm] = []  # from the samples event: probes, at most --max-probes
    events = []  # -o: the open events file

    def on_event(event: dict) -> None:
        if event["type"] == "samples":
            bars.append(progress_bar(ctx, "crf-search", search.max_probes, unit="probe"))
        elif event["type"] == "probe":
            bars[0].update(1)
            bars[0].set_postfix_str(f"crf {event['crf']}: score {event['score']:.2f}")
        for file in events:
            file.write(json.dumps(event) + "\n")
            file.flush()
        if fmt == "json":
            click.echo(json.dumps(event))
            sys.stdout.flush()
        elif event["type"] == "probe":
            log.info("crf %d: %s %.2f, %.0f kbps, encoded in %.1f s%s", event["crf"], search.pool, event["score"],
                     event["kbps"], event["encode_seconds"], f", VMAF {event['vmaf']:.2f}" if "vmaf" in event else "")

    if with_vmaf or reference:
        from contrique_video.encoding.reference import vmaf_ffmpeg

        vmaf_ffmpeg(encode.ffmpeg)
    scorer = open_scorer(model)
    with contextlib.ExitStack() as stack:
        if output:
            events.append(stack.enter_context(open(output, "w")))
        try:
            with logs_above_bars():
                result = crf_search(input_path, scorer, encode.encoder, target, search=search, settings=settings,
                                    ffmpeg=encode.ffmpeg, workdir=workdir, on_event=on_event, vmaf=with_vmaf,
                                    reference=reference)
        finally:
            for bar in bars:
                bar.close()
        pool = search.pool
        for warning in result.warnings:  # stderr, one line each; the result event carries them too
            log.warning(warning)
        if fmt == "table":
            size = f", {result.predicted_percent:.0f}% of the input" if result.predicted_percent is not None else ""
            took = f", about {result.predicted_encode_seconds:.0f} s to encode" if result.predicted_encode_seconds else ""
            click.echo(f"{encode.encoder} crf {result.crf}: predicted {pool} score {result.score:.2f} (target "
                       f"{target:g}, head {result.head}), {result.kbps:.0f} kbps, "
                       f"{result.predicted_bytes / 1e6:.2f} MB for the whole input{size}{took}")
        if not result.reached:
            fail(f"target {target:g} not reached: even CRF {result.crf} scores {result.score:.2f} ({pool})")
            sys.exit(1)
        if result.too_big:
            fail(f"CRF {result.crf} would be {result.predicted_percent:.0f}% of the input, above "
                 f"--max-encoded-percent {search.max_encoded_percent:g}")
            sys.exit(1)
        if not encode_path:
            return
        log.info("encoding %s at crf %d to %s: ffmpeg %s", input_path, result.crf, encode_path,
                 " ".join(result.ffmpeg_args[:-1] + [encode_path]))
        from contrique_video.encoding.probe import media_info

        info = media_info(input_path)
        frames = search.frames * search.samples
        totals = {"encode": round((info.duration or 0) * info.fps) or None, "score": frames}
        stages: dict[str, tqdm] = {}

        def on_progress(stage: str, n: int) -> None:  # one bar at a time: the encode's frames, then the scored
            if stage not in stages:
                for bar in stages.values():
                    bar.close()
                stages[stage] = progress_bar(ctx, stage, totals[stage])
            stages[stage].update(n - stages[stage].n)

        try:
            with logs_above_bars():
                event = encode_chosen(input_path, encode_path, result, scorer, frames=frames, settings=settings,
                                      ffmpeg=encode.ffmpeg, vmaf=with_vmaf, reference=reference,
                                      on_progress=on_progress)
        finally:
            for bar in stages.values():
                bar.close()
        on_event(event)
        if fmt != "json":
            pct = f", {event['percent']:.0f}% of the input" if event["percent"] is not None else ""
            vm = f", VMAF {event['vmaf']:.2f}" if "vmaf" in event else ""
            click.echo(f"{encode_path}: {pool} score {event['score']:.2f} (target {target:g}){vm}, "
                       f"{event['kbps']:.0f} kbps{pct}, encoded in {event['encode_seconds']:.0f} s")


def height_list(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    """``--heights`` parsed while parsing: numbers, else a usage error."""
    try:
        return [int(h) for h in value.split(",")]
    except ValueError:
        raise click.BadParameter("give numbers, e.g. --heights 1080,720") from None


@click.command("ladder")
@quiet_option
@click.argument("input_path", metavar="INPUT")
@option_group("grid", Grid, [
    click.option("--heights", default="1080,720,540,360", show_default=True, callback=height_list,
                 help="Rendition heights; those above the source's are skipped."),
    click.option("--crf", "crfs", default="18:42:4", show_default=True, callback=crf_list,
                 help="CRFs: START:STOP:STEP (ascending, STOP included) or a list a,b,c."),
    display_option("the renditions are upscaled to it and scored there (default: the source size)."),
    ENCODE_FRAMES,
    click.option("--rungs", type=click.IntRange(1), default=4, show_default=True, help="Rungs to recommend from the hull."),
])
@output_dir_option("the folder for ladder.csv, ladder.json and, with matplotlib (the [plots] extra), ladder.png "
                   "(ladder.partial.* if the run stops early); stdout shows the same ladder (--format).")
@click.option("--keep-renditions", is_flag=True, help="Keep the encodes in OUTPUT/renditions.")
@shared("format", "ladder: one row (table, csv) per rendition; json prints the ladder (ladder.json's object) as one "
                  "line.", choices=("table", "json", "csv"))
@shared("vmaf", "every rendition (at the display size): a vmaf column.")
@reference_option("every rendition (scaled to REF's size)")
@encode_options
@model_options()
@WORKDIR
@click.pass_context
@guarded
def ladder_command(ctx, input_path, grid, outdir, keep_renditions, fmt, with_vmaf, reference, encode, model, workdir):
    """Encode INPUT at every height x CRF, score each rendition at the display size, and recommend rungs
    from the upper convex hull of score against bitrate.

    Exit codes: 0 when the grid is complete, 1 when it stopped early (the finished renditions are written as
    ladder.partial.csv/json/png and the error is one line on stderr), 2 for usage errors, 130 on Ctrl-C and 143
    on SIGTERM (the finished renditions are written as ladder.partial.* too).
    """
    from contrique_video.encoding.ladder import Hooks, build_ladder
    from contrique_video.runs.inputs import Terminated, stop_signals

    spec, settings = make_settings(encode)
    check_crf_range(spec, "--crf", *grid.crfs)
    if with_vmaf or reference:
        from contrique_video.encoding.reference import vmaf_ffmpeg

        vmaf_ffmpeg(encode.ffmpeg)
    plot = ladder_plot()
    scorer = open_scorer(model)
    bars: list[tqdm] = []

    def on_rendition(r) -> None:
        bars[0].update(1)
        bars[0].set_postfix_str(f"{r.height}p crf {r.crf}: score {r.score:.2f}")
        log.info("%dp crf %d: %.0f kbps, score %.2f%s", r.height, r.crf, r.kbps, r.score,
                 "" if r.vmaf is None else f", VMAF {r.vmaf:.2f}")

    try:
        with stop_signals(), logs_above_bars():
            try:
                hooks = Hooks(on_plan=lambda n: bars.append(progress_bar(ctx, "ladder", n, unit="rendition")),
                              on_rendition=on_rendition)
                ladder = build_ladder(input_path, scorer, encode.encoder, grid, settings=settings, ffmpeg=encode.ffmpeg,
                                      workdir=workdir, keep=Path(outdir) / "renditions" if keep_renditions else None,
                                      vmaf=with_vmaf, reference=reference, hooks=hooks)
            finally:
                for bar in bars:
                    bar.close()
    except (KeyboardInterrupt, Terminated) as exc:
        ladder = getattr(exc, "ladder", None)
        code, what = (130, "interrupted") if isinstance(exc, KeyboardInterrupt) else (143, "terminated")
        if ladder is None:  # stopped before the grid started: nothing to keep
            fail(what)
            sys.exit(code)
        report_ladder(ladder, outdir, fmt, plot)
        fail(f"{what}: {len(ladder.renditions)} finished renditions kept as partial in {outdir}")
        sys.exit(code)
    report_ladder(ladder, outdir, fmt, plot)
    if ladder.partial:
        fail(f"ladder stopped early, {len(ladder.renditions)} renditions kept as partial: {ladder.error}")
        sys.exit(1)


def ladder_plot():
    """What draws ladder.png: :func:`~contrique_video.runs.plot.plot_ladder` where matplotlib is installed; else
    None, said once on stderr before any work (the tables do not need it)."""
    from contrique_video.extras import MissingExtraError, require

    try:
        require("matplotlib", "ladder.png")
    except MissingExtraError as exc:
        log.warning("%s; it is skipped", exc)
        return None
    from contrique_video.runs.plot import plot_ladder

    return plot_ladder


def report_ladder(ladder, outdir: str, fmt: str, plot) -> None:
    """Write the ladder files (ladder.partial.* for a partial run; ladder.png when ``plot``) and print it on stdout."""
    from contrique_video.encoding.ladder import save

    paths = save(ladder, outdir, plot=plot)
    if fmt == "json":
        click.echo(json.dumps(ladder.record()))
    elif fmt == "csv":
        click.echo(ladder.table().to_csv(index=False, float_format="%.4f"), nl=False)
    else:
        table = ladder.table()
        table["mark"] = np.where(table["rung"], "rung", np.where(table["on_hull"], "hull", ""))
        shown = ["height", "width", "crf", "kbps", "score"] + (["vmaf"] if "vmaf" in table else []) + ["mark"]
        click.echo(table[shown].to_string(index=False, float_format="%.2f"))
    log.info("wrote %s", ", ".join(map(str, paths)))
