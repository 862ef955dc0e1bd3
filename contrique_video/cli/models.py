"""Model commands: ``features``, ``fit``, ``evaluate``, ``import-head``, ``export-onnx``, ``precision-check``,
``model-table``, ``degradation-check``.

Each parses its options, calls the package's API (the Scorer, :mod:`contrique_video.training`,
:mod:`contrique_video.backends.export`) and prints.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import click

from contrique_video.cli.options import (
    RegisteredChoice,
    backend_pairs,
    command_line,
    fail,
    guard_outputs,
    decoder_option,
    guarded,
    model_options,
    option_group,
    output_file,
    quiet_option,
    sampling_options,
    shared,
)
from contrique_video.decode.sampler import Sampling
from contrique_video.models.families import list_encoders

log = logging.getLogger("contrique_video")


@click.command()
@quiet_option
@click.argument("input_path", metavar="INPUT")
@shared("output", ".npy (float32 [frames, D]), .npz or .parquet (with frame and pts_time).", required=True,
        type=click.Path(dir_okay=False), callback=output_file(".npy", ".npz", ".parquet"))
@sampling_options("Extract features of")
@decoder_option
@model_options(head=False)
@click.pass_context
@guarded
def features(ctx, input_path, output, sampling, decoder, model):
    """Write per-frame CONTRIQUE features ([full-scale | half-scale])."""
    from contrique_video.runs.features import write_features

    guard_outputs([input_path, model.weights], output)
    scorer = model.scorer()
    result = scorer.features(input_path, sampling=sampling, decoder=decoder)
    write_features(result, output)
    log.info("wrote %d x %d features to %s", *result.features.shape, output)


@click.command("import-head")
@quiet_option
@click.argument("pickle_file", type=click.Path(dir_okay=False))
@shared("output", "the head JSON to write.", required=True, type=click.Path(dir_okay=False), callback=output_file())
@shared("name", "(default: from the file name).")
@guarded
def import_head(pickle_file, output, name):
    """Convert an official CONTRIQUE sklearn Ridge (.save) into a plain JSON head, without unpickling code."""
    from contrique_video.training.ridge_import import import_ridge

    guard_outputs([pickle_file], output)
    head = import_ridge(pickle_file, name=name)
    head.save(output)
    click.echo(f"{output}: head {head.name!r}, {head.dim} weights, intercept {head.intercept:.6f}, "
               f"{head.scale} {'higher' if head.higher_is_better else 'lower'} is better")


@click.command("export-onnx")
@quiet_option
@shared("weights", "The one exported.")
@shared("precision", "fp32: the encoder as it is; int8: quantised with calibration (--calibrate or --table).",
        choices=("fp32", "int8"), default="fp32")
@click.option("--calibrate", multiple=True, type=click.Path(),
              help="int8: media whose frames (32 per video, both scales) set the activation ranges; repeatable.")
@click.option("--table", type=click.Path(dir_okay=False),
              help="int8: the calibration table to read, or to write when --calibrate is given "
                   "(default: the built-in model's, or the cache's).")
@shared("output", "the ONNX file to write.", required=True, type=click.Path(dir_okay=False), callback=output_file())
@guarded
def export_onnx(weights, precision, calibrate, table, output):
    """Export the encoder (one scale, dynamic batch/height/width) to ONNX, optionally int8-quantised."""
    from contrique_video.api import builtin_weights
    from contrique_video.backends.export import export_onnx as export
    from contrique_video.backends.int8 import calibration_table, quantize_int8
    from contrique_video.decode import open_source
    from contrique_video.models import resolve_model

    path = Path(weights) if weights else builtin_weights()
    guard_outputs([path, table], output)
    model = resolve_model(path)  # the card read and the weights checked once, for the digest, table and export
    digest = model.digest
    if precision == "fp32":
        if calibrate or table:
            raise click.UsageError("--calibrate and --table are for --precision int8")
        export(model.load(), output, source=digest)
    else:
        table_path = Path(table) if table else calibration_table(model, digest)
        frames = []
        for media in calibrate:
            with open_source(media) as src:
                frames += [f.rgb for f in src.frames(Sampling())]
        if calibrate:
            table_path.parent.mkdir(parents=True, exist_ok=True)
            table_path.unlink(missing_ok=True)  # computed anew from these frames
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = export(model.load(), Path(tmp) / "fp32.onnx", source=digest)
            quantize_int8(fp32, output, table_path, frames)
    click.echo(f"{output}: {precision} ONNX of {path.name} (sha256 {digest}...)")


@click.command()
@quiet_option
@click.argument("media", type=click.Path())
@shared("mos", "of the media.", required=True)
@shared("output", "the head JSON to write.", required=True, type=click.Path(dir_okay=False), callback=output_file())
@shared("name", "(default: the output file's stem).")
@click.option("--trained-on", help="Dataset description stored in the head (default: the MOS file and count).")
@click.option("--scale", default="MOS", show_default=True, help="Name of the MOS scale, stored in the head.")
@click.option("--range", "score_range", default="0,100", show_default=True, help="LO,HI of the MOS scale.")
@click.option("--lower-is-better", is_flag=True, help="The scale is a DMOS (lower is better).")
@shared("weights", "The one fitted on.")
@shared("cache", "a .npz file.", type=click.Path(dir_okay=False))
@shared("threads")
@click.pass_context
@guarded
def fit(ctx, media, mos, output, name, trained_on, scale, score_range, lower_is_better, weights, cache, threads):
    """Fit a Ridge head (alpha by cross-validation) on a folder of media with MOS."""
    from contrique_video.models.head import LinearHead
    from contrique_video.training.extract import feature_extractor, mos_table
    from contrique_video.training.fit import evaluate, fit_linear, match_files, media_features

    try:
        lo, hi = (float(v) for v in score_range.split(","))
    except ValueError:
        raise click.BadParameter("give LO,HI, e.g. 0,100", param_hint="--range") from None
    table = mos_table(mos, None)
    paths = match_files(table, media)
    extractor = feature_extractor(weights, threads=threads)
    X = media_features(extractor.feature, paths, cache, extractor.key, progress=not ctx.obj["quiet"])
    y = table["mos"].to_numpy()
    model = fit_linear(X, y, extractor.blocks)
    cv = evaluate(X, y, blocks=extractor.blocks)
    head = LinearHead(weights=model.weights, intercept=model.intercept, name=name or Path(output).stem,
                      features=extractor.key, trained_on=trained_on or f"{Path(mos).name}, {len(y)} items", scale=scale,
                      range=(lo, hi), higher_is_better=not lower_is_better,
                      extra={"alpha": model.alphas, "n": int(len(y)),
                             "cv_10x80_20": {k: cv[k] for k in ("srcc", "plcc", "krcc", "rmse")}})
    guard_outputs([mos, weights], output)
    head.save(output)
    click.echo(json.dumps({"head": output, "alpha": head.extra["alpha"], **head.extra["cv_10x80_20"]}))


@click.command()
@quiet_option
@click.argument("media", type=click.Path())
@shared("mos", "of the media.", required=True)
@shared("weights", "The one evaluated.")
@click.option("--random-init", type=RegisteredChoice(list_encoders),
              help="Evaluate an untrained encoder of this architecture instead (a baseline).")
@click.option("--baseline", type=click.Choice(["laplacian", "nss"]),
              help="Evaluate a classical baseline instead: Laplacian variance, or the 36 NSS (BRISQUE-style) features.")
@click.option("--heldout", type=click.FloatRange(0, 0.9), help="Only the images `train --holdout F` held out.")
@shared("splits")
@shared("cache", "a .npz file.", type=click.Path(dir_okay=False))
@shared("threads")
@click.pass_context
@guarded
def evaluate(ctx, media, mos, weights, random_init, baseline, heldout, splits, cache, threads):
    """The paper's protocol: random 80/20 splits, median SRCC, PLCC, KRCC, RMSE of a Ridge head."""
    from contrique_video.training.extract import feature_extractor, mos_table
    from contrique_video.training.fit import evaluate as run
    from contrique_video.training.fit import match_files, media_features

    if sum(bool(v) for v in (weights, random_init, baseline)) > 1:
        raise click.UsageError("choose one of --weights, --random-init, --baseline")
    table = mos_table(mos, heldout)
    paths = match_files(table, media)
    extractor = feature_extractor(weights, random_init, baseline, threads)
    X = media_features(extractor.feature, paths, cache, extractor.key, progress=not ctx.obj["quiet"])
    res = run(X, table["mos"].to_numpy(), splits=splits, blocks=extractor.blocks)
    click.echo(json.dumps({"features": extractor.key, **res}))


@click.command("precision-check")
@quiet_option
@click.argument("media", type=click.Path(file_okay=False))
@click.option("--paths", "pairs", default="torch:bf16", show_default=True, callback=backend_pairs,
              help="BACKEND:PRECISION,... compared with eager torch:fp32.")
@shared("weights", "The one checked.")
@click.option("--step", type=click.IntRange(1), default=1, show_default=True, help="Every N-th image of mos.csv.")
@shared("threads")
@shared("output", "also write the entries as JSON (and the raw scores beside it as .npy).",
        type=click.Path(dir_okay=False), callback=output_file(".json"))
@click.option("--write-card", is_flag=True, help="Store the entries under \"precisions\" in the measured card (.json).")
@guarded
def precision_check(media, pairs, weights, step, threads, output, write_card):
    """Score changes of reduced-precision paths against eager fp32 on a MOS set (MEDIA: mos.csv and images/):
    the model card's "precisions" entries that `--backend auto` obeys. Prints them as JSON."""
    import shlex

    import numpy as np

    from contrique_video.api import builtin_weights
    from contrique_video.files import atomic_path, atomic_write
    from contrique_video.training.precision import precision_check as check
    from contrique_video.training.precision import write_card_precisions

    card = Path(weights) if weights else builtin_weights()
    if write_card and card.suffix != ".json":
        raise click.BadParameter("--write-card needs a model card (.json)", param_hint="--weights")
    words = ["contrique-video", "precision-check", media, "--paths", ",".join(f"{b}:{p}" for b, p in pairs),
             "--step", str(step), *(["--weights", weights] if weights else []),
             *(["--threads", str(threads)] if threads else []), *(["-o", output] if output else []),
             *(["--write-card"] if write_card else [])]
    command = " ".join(shlex.quote(str(w)) for w in words)
    result = check(media, pairs, card, step=step, threads=threads, command=command)
    text = json.dumps(result.entries, indent=1)
    if output:
        atomic_write(output, text)
        with atomic_path(Path(output).with_suffix(".npy")) as tmp, open(tmp, "wb") as f:
            np.save(f, result.scores)
    if write_card:
        write_card_precisions(card, result.entries)
        log.info("%s: precisions %s written", card, ", ".join(result.entries))
    click.echo(text)


@click.command("model-table")
@quiet_option
@click.argument("media", type=click.Path())
@shared("mos", "of the media.", required=True)
@shared("weights", "The one of the first rows.")
@click.option("--model", "models", multiple=True, metavar="NAME=CARD", help="Another model's row (repeatable).")
@click.option("--imagenet", default="lite0", show_default=True,
              help="Comma-separated EfficientNet-Lite variants whose frozen ImageNet weights get a row ('' for none).")
@shared("splits")
@shared("cache", "a folder for each row's features and the ImageNet cards.", required=True,
        type=click.Path(file_okay=False))
@shared("threads")
@shared("format", "model-table: one row per model (markdown for the card, json one object per line).",
        choices=("markdown", "json"), default="markdown")
@click.pass_context
@guarded
def model_table(ctx, media, mos, weights, models, imagenet, splits, cache, threads, fmt):
    """The model card's accuracy table: the model, its frozen trunk, other models, ImageNet Lite and the
    Laplacian baseline on one MOS set, each with the paper's protocol (median SRCC, PLCC, KRCC, RMSE)."""
    from contrique_video.training.model_table import markdown
    from contrique_video.training.model_table import model_table as table

    named = {}
    for item in models:
        name, sep, card = item.partition("=")
        if not sep or not name or not card:
            raise click.BadParameter(f"give NAME=CARD, not {item!r}", param_hint="--model")
        named[name] = Path(card)
    rows = table(media, mos, cache, weights, named, tuple(v for v in imagenet.split(",") if v), splits, threads,
                 progress=not ctx.obj["quiet"])
    click.echo("\n".join(map(json.dumps, rows)) if fmt == "json" else markdown(rows, splits))



def names(ctx, param, value: str | None) -> tuple[str, ...] | None:
    """A comma-separated list of names (None when not given)."""
    if value is None:
        return None
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise click.BadParameter("give one or more comma-separated names")
    return items


def tiers(ctx, param, value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"give comma-separated tiers such as 1,2, not {value!r}") from None


@click.command("degradation-check")
@quiet_option
@option_group("plan", dict, [
    shared("weights", "The one checked."),
    shared("head", "The one checked; with --features, required."),
    click.option("--features", metavar="lite0|lite1|lite2[/LAYOUT]",
                 help="Score frozen ImageNet EfficientNet-Lite features with --head instead of a model (layouts "
                      "stages-meanstd, stages-meanstd+nss, last)."),
    click.option("--also", multiple=True, metavar="CARD",
                 help="Append another model's features to --features (for heads fit on stacked features); repeatable."),
    click.option("--wallpapers", type=click.Path(exists=True, file_okay=False, path_type=Path),
                 help="Folder of the extracted Debian wallpaper packages (the held-out wallpaper photos); without it, "
                      "the held-out photos that ship with scikit-learn only."),
    click.option("--images", callback=names, metavar="NAMES",
                 help="Comma-separated pristine sources instead of the held-out set (wallpaper names, "
                      "package:PKG/PATH, skimage:NAME, gen:KIND/SEED)."),
    click.option("--sharp", is_flag=True, help="Also the generated sharp-detail sources (text, line art, product shots)."),
    shared("types", "to damage the images with; all, or noise for the five noise types.", default="all",
           show_default=True, callback=names),
    shared("crop", "the images are cut to.", dest="size", type=click.IntRange(64, 2048), default=384),
    click.option("--clips", type=click.IntRange(0), default=3, show_default=True,
                 help="Panning clips (CRF ladders, temporal noise) made from the first N sources."),
    click.option("--clip-frames", type=click.IntRange(1, 64), default=8, show_default=True, help="Frames per clip."),
    shared("cache", "a .npz file of the stills' and clips' features, reused across heads.",
           type=click.Path(dir_okay=False, path_type=Path)),
    click.option("--grain", callback=names, metavar="SOURCES",
                 help="Also 960x540 grain clips of these comma-separated held-out sources, scored on the "
                      "model's features (the built-in one or --weights) with the head under test."),
    click.option("--grain-tiers", default="1", show_default=True, callback=tiers,
                 help="Grain clips: 1 the grain curve and x264 CRF ladders, 2 static and luma grain, 3 other encoders."),
    click.option("--grain-cache", type=click.Path(dir_okay=False, path_type=Path),
                 help="Feature cache of the grain clips (default: grain_heldout.npz in the cache folder)."),
    shared("threads"),
    shared("precision", "of the model's features: fp32 gives the model card's tables; auto runs what `score` "
           "runs on this CPU (bf16 where the card allows it)."),
])
@click.option("--worst", type=click.IntRange(0), default=12, show_default=True, help="Worst cases listed in the table.")
@shared("format", "json holds the summary, the grain metrics, the targets missed and every score.",
        choices=("table", "json"))
@shared("output", "a CSV the summary is appended to as (head, metric, value) rows, with the date, CPU, commit "
        "and command.", dest="csv_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--strict", is_flag=True, help="Exit 1 when a target is missed.")
@click.pass_context
@guarded
def degradation_check(ctx, plan, worst, fmt, csv_path, strict):
    """Does the score fall as held-out pristine images are damaged more, and does an encoder that smooths grain
    away gain from it? Damage of every type at 5 levels, CRF ladders, panning clips and grain clips; prints the
    share of adjacent levels ordered, levels above their clean source, the worst cases and the targets."""
    from contrique_video.training.degradation_check import append_csv
    from contrique_video.training.head_check import CheckPlan
    from contrique_video.training.head_check import degradation_check as check

    result = check(CheckPlan(**{**plan, "grain": plan["grain"] or ()}))  # it refuses bad combinations (exit 2)
    click.echo(json.dumps(result.to_dict()) if fmt == "json" else result.text(worst))
    if csv_path:
        append_csv(csv_path, result.csv_rows(), command_line(ctx))
    if strict and result.missed:
        fail("targets missed: " + "; ".join(result.missed))
        ctx.exit(1)
