"""``contrique-video train`` and ``train-branch``: self-supervised CONTRIQUE training and a quality branch, thin
layers over :func:`contrique_video.training.train.train` and :func:`contrique_video.training.branch.train_branch`.

Each command collects its options into the run's config (one ``config`` dict of its fields); the options both
commands have are defined once here.
"""

from __future__ import annotations

import json

import click

from contrique_video.cli.options import (RegisteredChoice, guarded, option_group, output_dir_option,
                                         quiet_option, shared)
from contrique_video.models.families import FAMILIES, trainable_encoders

LITE = FAMILIES["efficientnet-lite"]  # the trunks a quality branch (train-branch) sits beside


def data_options(pristine: str, authentic: str) -> list:
    """The image folders both training commands take, and the held-out fold scored at each evaluation."""
    return [
        click.option("--pristine", required=True, type=click.Path(), help=f"Folder of pristine photos ({pristine})."),
        click.option("--authentic", type=click.Path(), help=f"Folder of {authentic}."),
        shared("mos", "for the authentic folder: a held-out fold is scored at each evaluation."),
        click.option("--holdout", type=click.FloatRange(0, 0.9), default=0.3, show_default=True,
                     help="Fraction of the MOS images held out (never trained on)."),
    ]


def schedule_options(crop: int, steps: int, lr: float, eval_every: int, workers: int) -> list:
    """The run's length, pace and machinery, as both commands take them (with their own defaults)."""
    return [
        shared("crop", "trained on.", type=click.IntRange(64, 1024), default=crop),
        click.option("--steps", type=click.IntRange(1), default=steps, show_default=True, help="Optimiser steps in all."),
        click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=lr, show_default=True,
                     help="Peak learning rate."),
        click.option("--eval-every", type=click.IntRange(1), default=eval_every, show_default=True,
                     help="Steps between checkpoints (and held-out scoring with --mos)."),
        click.option("--checkpoint-minutes", type=click.FloatRange(0.1), default=5.0, show_default=True,
                     help="Also write OUTPUT/last.pt this often between evaluations."),
        shared("workers", "data-generation processes.", default=workers, show_default=True),
        shared("device"),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Seed of every random choice (same seed, same batches)."),
    ]


#: Options of both commands that are not config fields: how this process runs.
THREADS = shared("threads")
RESUME = shared("resume", "continue from OUTPUT/last.pt.")


def names_of(choices: str):
    """A callback refusing a name outside ``grain_ladders.CHOICES`` as a usage error (exit 2), before any data is read."""

    def check(ctx, param, value: str) -> str:
        from contrique_video.errors import InputError
        from contrique_video.training import grain_ladders

        try:
            grain_ladders.parse_names(value, getattr(grain_ladders, choices))
        except InputError as exc:
            raise click.BadParameter(str(exc)) from None
        return value

    return check


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


@click.command()
@quiet_option
@output_dir_option("the run folder (checkpoints, logs).")
@option_group("config", dict, [
    *data_options("synthetic distortions are applied to these", "authentically distorted images, each its own class"),
    click.option("--objective", type=click.Choice(["contrastive", "classify", "both"]), default="contrastive",
                 show_default=True, help="contrastive: the official NT-Xent recipe; classify: cross-entropy over "
                                         "distortion type and level; both: the sum of the two."),
    click.option("--arch", type=RegisteredChoice(trainable_encoders), default="resnet50", show_default=True,
                 help="Encoder architecture (resnet50 is CONTRIQUE's; efficientnet-lite* start from ImageNet with "
                      "--init imagenet)."),
    click.option("--batch", type=click.IntRange(2, 65536), default=64, show_default=True, help="Synthetic images per batch."),
    click.option("--authentic-batch", type=click.IntRange(0, 65536), default=32, show_default=True,
                 help="Authentic images per batch (with --authentic)."),
    click.option("--crops-per-image", type=click.IntRange(1, 64), default=1, show_default=True,
                 help="View pairs cut from each distorted image (cheaper data, less diversity)."),
    *schedule_options(crop=224, steps=1000, lr=0.05, eval_every=250, workers=2),
    shared("precision", "autocast precision of training (bf16 on GPUs; on this project's CPU bf16 training "
                        "measured 10x slower).", choices=("fp32", "bf16", "fp16"), default="fp32"),
    shared("types", "to train on (default: all; see distortions.TYPES)."),
    click.option("--init", type=click.Path(dir_okay=False),
                 help="Start from these weights (fine-tune) instead of random; 'imagenet' for the Lite ImageNet weights."),
    click.option("--trunk-lr", type=click.FloatRange(0), default=1.0, show_default=True,
                 help="The encoder's learning rate as a fraction of --lr (the projector and classifier train at --lr)."),
    click.option("--bn", type=click.Choice(["train", "frozen"]), default="train", show_default=True,
                 help="frozen: the encoder's BatchNorm statistics stay as initialised (for small batches)."),
    click.option("--freeze-stages", type=click.IntRange(0, 7), default=0, show_default=True,
                 help="EfficientNet-Lite: keep the stem and this many first stages fixed."),
    click.option("--lite-map", type=click.Choice(["head", "stage7"]), default="head", show_default=True,
                 help="EfficientNet-Lite: the map the objectives train; stage7 leaves the head convolution as initialised."),
])
@THREADS
@RESUME
@click.pass_context
@guarded
def train(ctx, outdir, config, threads, resume):
    """Self-supervised CONTRIQUE training from image folders (see the README's model card)."""
    from contrique_video.training import distortions
    from contrique_video.training.train import TrainConfig
    from contrique_video.training.train import train as run

    types = config.pop("types")
    chosen = [t.strip() for t in types.split(",")] if types else list(distortions.TYPES)
    set_threads(threads)
    cfg = TrainConfig(out=outdir, types=chosen, **config)
    result = run(cfg, resume=resume, progress=not ctx.obj["quiet"])
    click.echo(json.dumps({"steps": result["steps"], "best_srcc": result["best_srcc"], "out": outdir}))


@click.command("train-branch")
@quiet_option
@output_dir_option("the run folder (checkpoints, models, learning curve).")
@option_group("config", dict, [
    *data_options("the ladders' clean sources", "authentic images, also cut into ladders (harmful types only)"),
    click.option("--variant", type=RegisteredChoice(lambda: [e.removeprefix("efficientnet-") for e in LITE.encoders]),
                 default="lite2", show_default=True,
                 help="The frozen ImageNet EfficientNet-Lite trunk the branch sits beside."),
    click.option("--tap", type=click.IntRange(1, 7), default=2, show_default=True,
                 help="The trunk stage whose map the branch reads."),
    click.option("--width", type=click.IntRange(4, 1024), default=64, show_default=True,
                 help="The branch's first width (it ends at 2x)."),
    click.option("--pixels", is_flag=True,
                 help="The branch also reads the input pixels (patches lined up with the tapped map)."),
    click.option("--sources", type=click.IntRange(1, 4096), default=8, show_default=True,
                 help="Ladders per step (each clean + 5 levels)."),
    click.option("--authentic-share", type=click.FloatRange(0, 1), default=0.5, show_default=True,
                 help="Share of the ladders cut from authentic images (with --authentic)."),
    click.option("--grain-share", type=click.FloatRange(0, 1), default=0.0, show_default=True,
                 help="Share of the ladders that are a grainy crop above its x264 encodes, or noise on a grey or "
                      "flat copy (issue 30)."),
    click.option("--grain-encoders", default="x264", show_default=True, callback=names_of("ENCODERS"),
                 help="Encoders of the grainy ladders, comma-separated, one drawn per ladder: x264, x264grain "
                      "(-tune grain), x265, svtav1."),
    click.option("--grain-soft-share", type=click.FloatRange(0, 1), default=0.0, show_default=True,
                 help="Share of the grainy crops made soft (reduced 1.5-3 times and enlarged back) first."),
    click.option("--grain-authentic-share", type=click.FloatRange(0, 1), default=0.0, show_default=True,
                 help="Share of the grain ladders cut from authentic images (with --authentic) instead of pristine."),
    click.option("--flat-noise-types", default="white_noise,white_noise_color,impulse_noise,multiplicative_noise",
                 show_default=True, callback=names_of("FLAT_NOISE_TYPES"),
                 help="Noise types of the flat-noise ladders, comma-separated, one drawn per ladder; ffmpeg_noise "
                      "(noise=alls=N, the degradation check's) may be added."),
    *schedule_options(crop=128, steps=3000, lr=1e-3, eval_every=500, workers=1),
    click.option("--margin", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
                 help="Ranking margin between a ladder's levels."),
    click.option("--lam-classify", type=click.FloatRange(0), default=1.0, show_default=True,
                 help="Weight of the distortion classification loss (0: ranking alone)."),
])
@THREADS
@RESUME
@click.pass_context
@guarded
def train_branch(ctx, outdir, config, threads, resume):
    """Train a quality branch beside a frozen ImageNet EfficientNet-Lite trunk (README: A quality branch)."""
    from contrique_video.training.branch import BranchConfig
    from contrique_video.training.branch import train_branch as run

    set_threads(threads)
    cfg = BranchConfig(out=outdir, **config)
    result = run(cfg, resume=resume, progress=not ctx.obj["quiet"])
    last = result["history"][-1] if result["history"] else {}
    click.echo(json.dumps({"steps": last.get("step"), "srcc_both": last.get("srcc_both"), "out": outdir}))
